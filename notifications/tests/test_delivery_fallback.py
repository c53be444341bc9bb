"""Fallback on delivery failure, run in-process (the worker's task is the same service): once per
undelivered attempt, each vendor at most once, never for the recipient's own fault."""

from __future__ import annotations

import pytest

from notifications.delivery_fallback import (
    delivery_fallback_send,
    delivery_fallback_wanted,
    delivery_fallbacks_sweep,
)
from notifications.models import DeliveryAttempt, Notification
from notifications.receipts import Receipt, receipt_record
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch, run_until_settled
from sandbox.testing import SandboxHandle

pytestmark = pytest.mark.django_db


def undelivered(notification: Notification, code: str = "30008") -> DeliveryAttempt:
    """The vendor's `undelivered` receipt for the notification's current message."""
    result = receipt_record(vendor=notification.vendor, receipt=Receipt(
        vendor_message_id=notification.vendor_message_id, vendor_status="undelivered", state="undelivered",
        vendor_code=code))
    return DeliveryAttempt.objects.get(pk=result.attempt_id)


def sent_sms(sandbox: SandboxHandle) -> Notification:
    sandbox.control.set_faults("sms-primary", receipt_status="none")
    sandbox.control.set_faults("sms-fallback", receipt_status="none")
    return run_until_settled(dispatch(make_trigger())["sms"].pk)


def test_an_undelivered_sms_is_sent_once_through_the_next_vendor_however_often_it_is_asked(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    sms = sent_sms(sandbox)
    attempt = undelivered(sms)

    results = [delivery_fallback_send(attempt_id=attempt.pk) for _ in range(3)]

    assert results == ["sent", "not_claimed", "not_claimed"]
    sms.refresh_from_db()
    assert (sms.status, sms.vendor.name, sms.delivery_state) == ("sent", "sms-fallback", "accepted")
    assert [m["text"] for m in sandbox.control.messages("sms-fallback")] == [sms.rendered_text]
    assert list(sms.attempts.values_list("vendor__name", "outcome")) == [("sms-primary", "sent"), ("sms-fallback", "sent")]


def test_no_vendor_gets_the_same_notification_twice(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    sms = sent_sms(sandbox)
    delivery_fallback_send(attempt_id=undelivered(sms).pk)
    sms.refresh_from_db()

    second = delivery_fallback_send(attempt_id=undelivered(sms).pk)  # the fallback vendor's message fails too

    assert second == "no_vendor"
    assert len(sandbox.control.messages("sms-primary")) == len(sandbox.control.messages("sms-fallback")) == 1
    sms.refresh_from_db()
    assert sms.delivery_state == "undelivered"


def test_a_receipt_about_an_earlier_message_starts_nothing(vendors: dict, templates: None, sandbox) -> None:
    sms = sent_sms(sandbox)
    first = undelivered(sms)
    delivery_fallback_send(attempt_id=first.pk)
    DeliveryAttempt.objects.filter(pk=first.pk).update(fallback_started_at=None)  # as if never claimed

    assert delivery_fallback_send(attempt_id=first.pk) == "not_current"
    assert len(sandbox.control.messages("sms-fallback")) == 1


def test_the_sweep_starts_a_fallback_whose_hand_off_was_lost_and_only_once(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    sms = sent_sms(sandbox)
    undelivered(sms)  # its on-commit hand-off never ran (as with the broker down)
    landline = sent_sms(sandbox)
    undelivered(landline, code="30006")

    started = [delivery_fallbacks_sweep(grace_seconds=0) for _ in range(2)]

    assert started == [1, 0]
    sms.refresh_from_db()
    landline.refresh_from_db()
    assert (sms.vendor.name, landline.vendor.name) == ("sms-fallback", "sms-primary")


@pytest.mark.parametrize(("channel", "code", "wanted"), [
    ("sms", "30008", True),   # unknown carrier error
    ("sms", "30003", False),  # unreachable handset
    ("sms", "30005", False),  # unknown handset
    ("sms", "30006", False),  # landline
    ("sms", "21610", False),  # unsubscribed
    ("email", "", False),     # not a fallback channel by default
])
def test_the_policy_retries_carrier_faults_on_sms_only(channel: str, code: str, wanted: bool) -> None:
    assert delivery_fallback_wanted(channel=channel, vendor_code=code) is wanted


def test_both_attempts_and_their_receipts_show_in_the_admin(
    admin_client, vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    sms = sent_sms(sandbox)
    delivery_fallback_send(attempt_id=undelivered(sms).pk)
    sms.refresh_from_db()
    receipt_record(vendor=sms.vendor, receipt=Receipt(vendor_message_id=sms.vendor_message_id,
                                                      vendor_status="delivered", state="delivered"))

    page = admin_client.get(f"/admin/notifications/notification/{sms.pk}/change/").content.decode()

    assert "sms-primary" in page and "sms-fallback" in page
    assert "undelivered (30008)" in page  # the first attempt's receipt, with the carrier's code
    # Each attempt's own state: the first undelivered, the fallback's delivered (and so the notification).
    assert page.count("<p>Undelivered</p>") == 1
    assert page.count("<p>Delivered</p>") == 1
    assert '<div class="readonly">Delivered</div>' in page
