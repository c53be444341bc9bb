"""lifecycle.py: the status changes not already driven end to end by the send and dispatch
tests (lease renewal by whoever holds the notification, giving back a dispatch's claims), and
the hand-off that runs once a trigger commits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from notifications import lifecycle
from notifications.models import DeliveryAttempt, Notification, NotificationStatus, NotificationTrigger
from notifications.services import trigger_publish
from sandbox.testing import SandboxHandle

pytestmark = pytest.mark.django_db


def _held(*, lease_in: float, delivery_count: int = 1, channel: str = "email") -> Notification:
    trigger = NotificationTrigger.objects.create(
        event_type="order_confirmed", recipients={channel: "ana@example.com"}, relay_after=timezone.now()
    )
    return Notification.objects.create(
        trigger=trigger, event_type="order_confirmed", channel=channel, recipient="ana@example.com", locale="en",
        status=NotificationStatus.SENDING, delivery_count=delivery_count,
        lease_until=timezone.now() + timedelta(seconds=lease_in),
    )


def test_a_run_that_holds_its_notification_stretches_its_lease() -> None:
    notification = _held(lease_in=5)

    assert lifecycle.notification_lease_renew(notification=notification, seconds=60) is True

    lease = Notification.objects.get(pk=notification.pk).lease_until
    assert lease >= timezone.now() + timedelta(seconds=55)


def test_a_lease_renewal_never_shortens_the_lease() -> None:
    notification = _held(lease_in=120)
    before = Notification.objects.get(pk=notification.pk).lease_until

    assert lifecycle.notification_lease_renew(notification=notification, seconds=1) is True

    assert Notification.objects.get(pk=notification.pk).lease_until == before


def test_a_run_whose_notification_was_taken_over_cannot_renew_the_lease() -> None:
    notification = _held(lease_in=30, delivery_count=2)
    before = Notification.objects.get(pk=notification.pk).lease_until
    stale_run = Notification(pk=notification.pk, delivery_count=1)

    assert lifecycle.notification_lease_renew(notification=stale_run, seconds=600) is False

    assert Notification.objects.get(pk=notification.pk).lease_until == before


def test_a_dispatch_gives_back_its_unstarted_claims_but_not_one_with_an_open_vendor_call() -> None:
    unstarted, calling = _held(lease_in=30), _held(lease_in=30, channel="sms")
    DeliveryAttempt.objects.create(notification=calling, started_at=timezone.now())  # outcome empty: in flight

    lifecycle.notifications_release_unstarted([unstarted, calling])

    given_back = Notification.objects.get(pk=unstarted.pk)
    assert (given_back.status, given_back.lease_until) == (NotificationStatus.PENDING, None)
    assert Notification.objects.get(pk=calling.pk).status == NotificationStatus.SENDING


@override_settings(TRIGGER_HANDOFF="bench.sync_send.trigger_deliver_inline")
def test_the_benchmarks_synchronous_hand_off_delivers_before_the_publish_returns(
    vendors: dict, templates: None, sandbox: SandboxHandle, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        trigger = trigger_publish(
            event_type="order_confirmed", locale="en",
            payload={"order_ref": "AB12CD34", "customer_name": "Ana", "currency": "EUR", "total": "47.30",
                     "payment_error_code": "", "lines": []},
            recipients={"email": "ana@example.com", "sms": "+447911123456"}, subject_ref="order:sync",
        )

    statuses = dict(Notification.objects.filter(trigger=trigger).values_list("channel", "status"))
    assert statuses == {"email": NotificationStatus.SENT, "sms": NotificationStatus.SENT}
    assert [m["to"] for m in sandbox.control.messages("smtp-primary")] == [["ana@example.com"]]
    assert [m["to"] for m in sandbox.control.messages("sms-primary")] == ["+447911123456"]
