"""Cache invalidation hooks; filled in with the template cache."""
