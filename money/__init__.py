"""Money as customers read it: ISO 4217 currencies and their minor units, amounts parsed
strictly and kept exact, and one formatter (Babel, per locale) for email, SMS and the admin.

Shared by `checkout` (validation, storage, the API) and `notifications` (the `money` template
filter); it imports neither.
"""
