"""Fixtures for the delivery engine: real sandbox servers, demo vendors and templates."""

from __future__ import annotations

import uuid

import pytest

from notifications.demo import demo_templates_install, demo_vendors_install
from notifications.dispatch import trigger_dispatch_create
from notifications.models import Notification, NotificationStatus, NotificationTrigger, Vendor
from notifications.sending import notification_send
from notifications.services import trigger_publish
from sandbox.testing import SandboxHandle


@pytest.fixture
def vendors(db, sandbox: SandboxHandle) -> dict[str, Vendor]:
    """Two email and two SMS vendors on the sandbox, with small timeouts and breakers.

    Each test gets fresh vendor rows, hence fresh breaker keys in Redis (`vendor:<id>` with
    ids never reused in one test database) — plus a reset, for ids reused across runs.
    """
    ports = {name: sandbox.port(name) for name in ("smtp-primary", "smtp-fallback", "sms-primary", "sms-fallback")}
    installed = demo_vendors_install(host="127.0.0.1", ports=ports, timeout=1.0)
    Vendor.objects.update(
        breaker_window_size=10, breaker_minimum_calls=4, breaker_failure_rate=50, breaker_open_seconds=0.5,
        breaker_half_open_trials=2, breaker_slow_call_seconds=5,
    )
    from notifications.routing import vendor_circuit

    by_name = {vendor.name: Vendor.objects.get(pk=vendor.pk) for vendor in installed}
    for vendor in by_name.values():
        vendor_circuit(vendor).reset()
    return by_name


@pytest.fixture
def templates(db) -> None:
    demo_templates_install()


def make_trigger(*, event_type: str = "order_confirmed", locale: str = "en", phone: str = "+447911123456",
                 email: str | None = None, name: str = "Ana") -> NotificationTrigger:
    email = email or f"ana-{uuid.uuid4().hex[:8]}@example.com"
    return trigger_publish(
        event_type=event_type,
        locale=locale,
        payload={"order_ref": "AB12CD34", "customer_name": name, "currency": "EUR", "total": "47.30",
                 "payment_error_code": "", "lines": [{"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": "47.30", "line_total": "47.30"}]},
        recipients={"email": email, "sms": phone},
        subject_ref=f"order:{uuid.uuid4()}",
    )


def run_until_settled(notification_id: int, *, max_runs: int = 20) -> Notification:
    """Run the send service as the worker would, ignoring retry delays, until it settles."""
    for _ in range(max_runs):
        Notification.objects.filter(pk=notification_id, status=NotificationStatus.RETRYING).update(next_attempt_at=None)
        outcome = notification_send(notification_id=notification_id)
        if outcome.retry_in is None:
            break
    return Notification.objects.get(pk=notification_id)


def dispatch(trigger: NotificationTrigger) -> dict[str, Notification]:
    ids = trigger_dispatch_create(trigger_id=trigger.pk)
    return {n.channel: n for n in Notification.objects.filter(pk__in=ids)}
