"""System checks of the payment configuration (`manage.py check`, `check --deploy`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.utils.module_loading import import_string

PAYMENTS_TAG = "payments"


@register(PAYMENTS_TAG)
def payment_gateway_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """PAYMENT_GATEWAY names an importable class with a `charge` method."""
    path = settings.PAYMENT_GATEWAY
    try:
        gateway_class = import_string(path)
    except ImportError as exc:
        return [Error(f"PAYMENT_GATEWAY {path!r} cannot be imported: {exc}", id="checkout.E001")]
    if not callable(getattr(gateway_class, "charge", None)):
        return [
            Error(
                f"PAYMENT_GATEWAY {path!r} has no charge() method",
                hint="See docs/payments.md for the interface a gateway implements.",
                id="checkout.E002",
            )
        ]
    return []


@register(PAYMENTS_TAG, deploy=True)
def sandbox_payment_gateway_deploy_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A deploy that charges through the sandbox takes `tok_ok` as paid: say so loudly."""
    if settings.PAYMENT_GATEWAY == settings.SANDBOX_PAYMENT_GATEWAY and not settings.DEBUG:
        return [
            Warning(
                "PAYMENT_GATEWAY is the sandbox gateway: any client can pay with the test token 'tok_ok'.",
                hint="Fine for a staging deploy; production names its provider's gateway (docs/payments.md).",
                id="checkout.W001",
            )
        ]
    return []
