"""Test data of the delivery engine, for any app's tests: triggers, the support group, and the
admin forms of vendors, event types and templates.

Not a test module: tests import it instead of each other (tests/test_test_modules_stand_alone.py).
"""

from __future__ import annotations

import importlib
import json
import uuid
from typing import Any

from django.apps import apps as django_apps
from django.contrib.auth.models import Group
from django.utils import timezone

from notifications.models import NotificationTrigger, Vendor
from notifications.services import trigger_publish

# A registered event type of the tests' own, with a schema and a sample that satisfies it.
SHIPMENT_SCHEMA = {
    "type": "object",
    "required": ["order_ref", "carrier", "tracking_url"],
    "properties": {
        "order_ref": {"type": "string"},
        "carrier": {"type": "string", "maxLength": 40},
        "tracking_url": {"type": "string"},
        "parcels": {"type": "integer", "minimum": 1},
    },
}
SHIPMENT_SAMPLE = {"order_ref": "3F2B8C1E", "carrier": "DHL", "tracking_url": "https://dhl.example/t/123", "parcels": 2}


def make_trigger(*, event_type: str = "order_confirmed", locale: str = "en", phone: str = "+447911123456",
                 email: str | None = None, name: str = "Ana") -> NotificationTrigger:
    """A published order trigger (EUR 47.30, one line) for one email and one phone."""
    email = email or f"ana-{uuid.uuid4().hex[:8]}@example.com"
    return trigger_publish(
        event_type=event_type,
        locale=locale,
        payload={"order_ref": "AB12CD34", "customer_name": name, "currency": "EUR", "total": "47.30",
                 "payment_error_code": "", "lines": [{"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": "47.30", "line_total": "47.30"}]},
        recipients={"email": email, "sms": phone},
        subject_ref=f"order:{uuid.uuid4()}",
    )


def stored_trigger() -> NotificationTrigger:
    """A trigger row as a committed checkout leaves it, without publishing it (for tests that
    commit: trigger_publish would hand it to the broker at once)."""
    return NotificationTrigger.objects.create(
        event_type="order_confirmed", payload={"order_ref": "AB12CD34", "lines": []},
        recipients={"email": "ana@example.com", "sms": "+447911123456"}, relay_after=timezone.now(),
    )


def support_group() -> Group:
    """The migration's group (recreated: a transactional test's flush may have emptied it)."""
    migration = importlib.import_module("notifications.migrations.0002_support_group")
    migration.support_group_install(django_apps, None)
    return Group.objects.get(name=migration.SUPPORT_GROUP)


def vendor_form_data(vendor: Vendor, **overrides: Any) -> dict[str, Any]:
    """The admin's vendor change form as a browser would post it for `vendor`, secrets left blank."""
    fields = (
        "name", "channel", "adapter", "priority", "timeout_seconds", "breaker_window_size", "breaker_minimum_calls",
        "breaker_failure_rate", "breaker_slow_call_seconds", "breaker_slow_call_rate", "breaker_open_seconds",
        "breaker_half_open_trials", "rate_limit_per_second", "rate_limit_burst",
    )
    data: dict[str, Any] = {name: getattr(vendor, name) for name in fields}
    data.update(enabled="on", settings=json.dumps(vendor.settings), secret__auth_token="")
    data.update(overrides)
    return data


def event_type_form(**overrides: Any) -> dict[str, Any]:
    """The admin's add form of the `shipment_sent` event type."""
    data = {
        "name": "shipment_sent", "description": "The parcel left the warehouse.", "category": "transactional",
        "payload_schema": json.dumps(SHIPMENT_SCHEMA), "sample_payload": json.dumps(SHIPMENT_SAMPLE),
    }
    data.update(overrides)
    return data


def template_form(**overrides: Any) -> dict[str, Any]:
    """The admin's add form of an English SMS template of `shipment_sent`."""
    data = {
        "event_type": "shipment_sent", "channel": "sms", "locale": "en", "is_active": "on", "subject": "",
        "body_text": "Order {{ order_ref }} shipped with {{ carrier }}: {{ tracking_url }}", "body_html": "",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data
