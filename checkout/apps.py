from __future__ import annotations

from django.apps import AppConfig


class CheckoutConfig(AppConfig):
    name = "checkout"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from checkout import checks  # noqa: F401  (registers the payment configuration checks)
        from checkout.api_keys import api_client_saved_or_deleted
        from checkout.models import ApiClient

        for signal in (post_save, post_delete):
            signal.connect(api_client_saved_or_deleted, sender=ApiClient, dispatch_uid=f"api-key-cache-{signal}")
