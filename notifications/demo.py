"""Demo configuration: the sandbox vendors, the checkout's event types and the default
templates (used by `seed_demo`, the tests, the benchmark and the chaos suite)."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings

from notifications.configuration import template_save, vendor_upsert
from notifications.events import checkout_event_types
from notifications.models import EventType, NotificationTemplate, Vendor

SEED_TEMPLATES = Path(settings.BASE_DIR) / "templates" / "notifications" / "seed_templates.json"
# The seed's earlier texts (amounts as "19.00 BRL", the gateway's English error): a template
# still exactly like one of them is brought up to date by demo_templates_install.
SEED_TEMPLATES_EARLIER = Path(settings.BASE_DIR) / "templates" / "notifications" / "seed_templates_earlier.json"
SANDBOX_ACCOUNT_SID = "AC" + "0" * 32
SANDBOX_AUTH_TOKEN = "sandbox-token"  # the sandbox's documented default, not a real secret


def demo_event_types_install() -> int:
    """Register the checkout's event types that are missing (migration 0004 registers them; a
    flushed test database has lost them); returns how many were created."""
    created = 0
    for row in checkout_event_types():
        _, was_created = EventType.objects.get_or_create(name=row["name"], defaults=row)
        created += was_created
    return created


def demo_templates_install() -> int:
    """Create the default templates (and the checkout's event types) that do not exist yet, and
    bring up to date those still exactly as an earlier version of this seed wrote them
    (SEED_TEMPLATES_EARLIER): a template an operator edited is never touched. Returns how many
    templates were created or updated.
    """
    demo_event_types_install()
    earlier = {_seed_key(row): row for row in json.loads(SEED_TEMPLATES_EARLIER.read_text())}
    changed = 0
    for row in json.loads(SEED_TEMPLATES.read_text()):
        existing = NotificationTemplate.objects.filter(
            event_type=row["event_type"], channel=row["channel"], locale=row["locale"], is_active=True
        ).first()
        if existing is None:
            template_save(template=NotificationTemplate(**row), saved_by="seed")
            changed += 1
        elif _seed_key(row) in earlier and _texts(existing) == _texts(earlier[_seed_key(row)]) != _texts(row):
            existing.subject, existing.body_text, existing.body_html = row["subject"], row["body_text"], row["body_html"]
            template_save(template=existing, saved_by="seed")
            changed += 1
    return changed


def _seed_key(row: dict) -> tuple[str, str, str]:
    return row["event_type"], row["channel"], row["locale"]


def _texts(template: NotificationTemplate | dict) -> tuple[str, str, str]:
    if isinstance(template, dict):
        return template["subject"], template["body_text"], template["body_html"]
    return template.subject, template.body_text, template.body_html


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
