"""Adapter registry: key (stored in `Vendor.adapter`) -> dotted path of the adapter class.

Adding a vendor is one module and one line here. Classes are imported on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from django.utils.module_loading import import_string

from notifications.vendors.base import VendorAdapter

VENDOR_ADAPTERS: dict[str, str] = {
    "smtp": "notifications.vendors.smtp.SmtpAdapter",
    "twilio": "notifications.vendors.twilio.TwilioAdapter",
    "webhook_email": "notifications.vendors.webhook.WebhookEmailAdapter",
    "webhook_sms": "notifications.vendors.webhook.WebhookSmsAdapter",
    "console_email": "notifications.vendors.console.ConsoleEmailAdapter",
    "console_sms": "notifications.vendors.console.ConsoleSmsAdapter",
    "anymail": "notifications.vendors.anymail_esp.AnymailEspAdapter",
}


@cache
def adapter_class(key: str) -> type[VendorAdapter]:
    """The adapter class registered under `key`. Raises KeyError for an unknown key."""
    try:
        path = VENDOR_ADAPTERS[key]
    except KeyError:
        raise KeyError(f"unknown vendor adapter {key!r}") from None
    cls = import_string(path)
    if not (isinstance(cls, type) and issubclass(cls, VendorAdapter)) or cls.key != key:
        raise TypeError(f"{path} is not the VendorAdapter for key {key!r}")
    return cls


def adapter_choices(channel: str | None = None) -> list[tuple[str, str]]:
    """[(key, label)] for model field / form choices, optionally only the adapters of `channel`."""
    classes = [adapter_class(key) for key in VENDOR_ADAPTERS]
    return [(cls.key, cls.label) for cls in classes if channel is None or cls.channel == channel]


def build_adapter(
    key: str, *, settings: Mapping[str, Any], secrets: Mapping[str, str], timeout: float
) -> VendorAdapter:
    """A ready adapter for one vendor row. Never touches the network; raises KeyError for an unknown key."""
    return adapter_class(key)(settings=settings, secrets=secrets, timeout=timeout)
