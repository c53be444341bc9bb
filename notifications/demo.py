"""Demo configuration: the sandbox vendors, the checkout's event types and the default
templates (used by `seed_demo`, the tests, the benchmark and the chaos suite)."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings

from notifications.configuration import template_save, vendor_upsert
from notifications.models import EventType, NotificationTemplate, Vendor

SEED_TEMPLATES = Path(settings.BASE_DIR) / "templates" / "notifications" / "seed_templates.json"
# The checkout's event types, as migration 0004 registers them (a flushed test database has
# lost them; this puts them back).
SEED_EVENT_TYPES = Path(settings.BASE_DIR) / "templates" / "notifications" / "seed_event_types.json"
SANDBOX_ACCOUNT_SID = "AC" + "0" * 32
SANDBOX_AUTH_TOKEN = "sandbox-token"  # the sandbox's documented default, not a real secret


def demo_event_types_install() -> int:
    """Register the checkout's event types that are missing; returns how many were created."""
    created = 0
    for row in json.loads(SEED_EVENT_TYPES.read_text()):
        _, was_created = EventType.objects.get_or_create(name=row["name"], defaults=row)
        created += was_created
    return created


def demo_templates_install() -> int:
    """Create the default templates (and their event types) that do not exist yet; returns how
    many templates were created."""
    demo_event_types_install()
    created = 0
    for row in json.loads(SEED_TEMPLATES.read_text()):
        exists = NotificationTemplate.objects.filter(
            event_type=row["event_type"], channel=row["channel"], locale=row["locale"], is_active=True
        ).exists()
        if not exists:
            template_save(template=NotificationTemplate(**row), saved_by="seed")
            created += 1
    return created


def demo_vendors_install(*, host: str, ports: dict[str, int], timeout: float = 5.0) -> list[Vendor]:
    """Point two email and two SMS vendors (primary and fallback) at sandbox instances.

    `ports` maps sandbox instance names (smtp-primary, smtp-fallback, sms-primary,
    sms-fallback) to their ports.
    """
    vendors = []
    for priority, name in ((10, "smtp-primary"), (20, "smtp-fallback")):
        vendors.append(
            vendor_upsert(
                name=name,
                channel="email",
                adapter="smtp",
                priority=priority,
                enabled=True,
                timeout_seconds=timeout,
                settings={
                    "host": host,
                    "port": ports[name],
                    "use_tls": False,
                    "use_ssl": False,
                    "from_email": "Beacon Shop <no-reply@beacon.example>",
                    "dedupes_by_message_id": True,
                },
                secrets={},
            )
        )
    for priority, name in ((10, "sms-primary"), (20, "sms-fallback")):
        vendors.append(
            vendor_upsert(
                name=name,
                channel="sms",
                adapter="twilio",
                priority=priority,
                enabled=True,
                timeout_seconds=timeout,
                settings={
                    "base_url": f"http://{host}:{ports[name]}",
                    "account_sid": SANDBOX_ACCOUNT_SID,
                    "from_number": "+15005550006",
                },
                secrets={"auth_token": SANDBOX_AUTH_TOKEN},
            )
        )
    return vendors
