from __future__ import annotations

from django.apps import AppConfig


class CheckoutConfig(AppConfig):
    name = "checkout"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from checkout import checks  # noqa: F401  (registers the payment configuration checks)
