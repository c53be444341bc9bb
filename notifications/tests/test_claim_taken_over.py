"""A send whose claim another run took over while it was stuck must not go on to the next vendor.

Found by `make cluster-test` (scenario 1): a worker host cut off the network in the middle of a
vendor call stays stuck past its lease; the sweeper re-queues the notification and another host
sends it. When the cable is back, the first worker's call ends as an unknown outcome and, without
this rule, it failed over to the fallback vendor: a second copy that nothing flagged, since its
settle found the notification no longer its own.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from harness.processes import wait_until
from notifications.lifecycle import notification_claim
from notifications.models import AttemptOutcome, DeliveryAttempt, Notification, Vendor
from notifications.routing import channel_vendors, vendors_forget
from notifications.sending import notification_send, notification_send_claimed
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch
from sandbox.testing import SandboxHandle

# The run is stuck in the primary's call (1 s timeout) when another run takes the notification over.
TAKEOVER_AFTER_SECONDS = 0.3


@pytest.mark.django_db(transaction=True)
def test_a_send_taken_over_while_its_vendor_call_hung_stops_instead_of_failing_over(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    sandbox.control.set_faults("sms-primary", hang=True)
    notification = dispatch(make_trigger(phone="+447911000101"))["sms"]

    def another_run_claims_it() -> None:
        # What `notification_claim` does once this run's lease has run out: a new delivery of the notification.
        Notification.objects.filter(pk=notification.pk).update(delivery_count=F("delivery_count") + 1)

    takeover = threading.Timer(TAKEOVER_AFTER_SECONDS, another_run_claims_it)
    takeover.start()
    try:
        outcome = notification_send(notification_id=notification.pk)
    finally:
        takeover.join()

    assert outcome.status == "taken_over"
    assert outcome.retry_in is None
    assert sandbox.control.messages("sms-fallback", to="+447911000101") == []
    attempts = list(DeliveryAttempt.objects.filter(notification=notification).values_list("vendor__name", "outcome"))
    assert attempts == [("sms-primary", AttemptOutcome.TIMEOUT)]


@pytest.mark.django_db(transaction=True)
def test_a_send_still_holding_its_claim_fails_over_after_a_timeout(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    sandbox.control.set_faults("sms-primary", hang=True)
    notification = dispatch(make_trigger(phone="+447911000102"))["sms"]

    outcome = notification_send(notification_id=notification.pk)

    assert outcome.status == "sent"
    assert len(sandbox.control.messages("sms-fallback", to="+447911000102")) == 1
    assert Notification.objects.get(pk=notification.pk).possible_duplicate is True


# Found by `make cluster-test` (scenario 1) on a busy machine: a run held up between its claim and
# its first vendor call (its database round trips stalled while its host was cut off) called the
# vendor once the cable was back, long after its lease had run out and another run had claimed the
# notification; the other run delivered too, and nothing flagged the second copy.


def _stale_and_current_runs(notification: Notification) -> tuple[Notification, Notification]:
    """The run that claimed first and was held up past its lease, and the run that took over."""
    vendors = channel_vendors(channel=notification.channel)
    stale, _ = notification_claim(notification_id=notification.pk, vendors=vendors)
    Notification.objects.filter(pk=notification.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    current, _ = notification_claim(notification_id=notification.pk, vendors=vendors)
    assert stale is not None and current is not None and current.delivery_count == stale.delivery_count + 1
    return stale, current


@pytest.mark.django_db(transaction=True)
def test_a_run_held_up_past_its_lease_before_its_first_call_stops_without_calling(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    notification = dispatch(make_trigger(phone="+447911000103"))["sms"]
    stale, current = _stale_and_current_runs(notification)
    stale.lease_until = timezone.now() - timedelta(seconds=1)  # what the held-up run's clock says

    outcome = notification_send_claimed(notification=stale, vendors=channel_vendors(channel="sms"))

    assert outcome.status == "taken_over"
    assert sandbox.control.messages("sms-primary", to="+447911000103") == []
    assert not DeliveryAttempt.objects.filter(notification=notification).exists()
    assert notification_send_claimed(notification=current, vendors=channel_vendors(channel="sms")).status == "sent"
    assert len(sandbox.control.messages("sms-primary", to="+447911000103")) == 1
    assert Notification.objects.get(pk=notification.pk).possible_duplicate is False


@pytest.mark.django_db(transaction=True)
def test_a_copy_delivered_by_a_run_that_lost_its_claim_after_the_other_run_settled_is_flagged(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    notification = dispatch(make_trigger(phone="+447911000104"))["sms"]
    stale, current = _stale_and_current_runs(notification)  # the held-up run's clock still sees its lease
    assert notification_send_claimed(notification=current, vendors=channel_vendors(channel="sms")).status == "sent"

    outcome = notification_send_claimed(notification=stale, vendors=channel_vendors(channel="sms"))

    assert outcome.status == "taken_over"
    assert len(sandbox.control.messages("sms-primary", to="+447911000104")) == 2
    settled = Notification.objects.get(pk=notification.pk)
    assert settled.status == "sent" and settled.possible_duplicate is True
    assert list(DeliveryAttempt.objects.filter(notification=notification).values_list("outcome", flat=True)) == [
        AttemptOutcome.SENT, AttemptOutcome.SENT]


@pytest.mark.django_db(transaction=True)
def test_a_copy_a_run_delivered_after_losing_its_claim_is_taken_as_the_delivery_by_the_run_that_took_over(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    notification = dispatch(make_trigger(phone="+447911000105"))["sms"]
    stale, _ = _stale_and_current_runs(notification)
    # The held-up run delivers before the current run's send; its settle finds the claim gone.
    assert notification_send_claimed(notification=stale, vendors=channel_vendors(channel="sms")).status == "taken_over"
    Notification.objects.filter(pk=notification.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    # A third delivery of the notification (the current run died, say) reads the history first.
    outcome = notification_send(notification_id=notification.pk)

    assert outcome.status == "sent"
    assert len(sandbox.control.messages("sms-primary", to="+447911000105")) == 1
    settled = Notification.objects.get(pk=notification.pk)
    assert settled.status == "sent" and settled.possible_duplicate is False
    assert settled.vendor_message_id == DeliveryAttempt.objects.get(notification=notification).vendor_message_id


@pytest.mark.django_db(transaction=True)
def test_a_second_copy_settled_by_the_run_that_holds_the_claim_is_flagged(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    # Room for the current run's slow call (the fixture's vendors time out after 1 s).
    Vendor.objects.filter(name="sms-primary").update(timeout_seconds=10, updated_at=timezone.now())
    vendors_forget()
    notification = dispatch(make_trigger(phone="+447911000106"))["sms"]
    stale, current = _stale_and_current_runs(notification)
    # The current run has read the history (nothing yet) and is calling the vendor when the
    # held-up run's copy lands and is recorded on its attempt.
    sandbox.control.set_faults("sms-primary", latency_ms=3000)

    def current_run_sends() -> None:
        try:
            notification_send_claimed(notification=current, vendors=channel_vendors(channel="sms"))
        finally:
            connection.close()

    racing = threading.Thread(target=current_run_sends)
    racing.start()
    try:
        wait_until(lambda: DeliveryAttempt.objects.filter(notification=notification, outcome="").exists(),
                   timeout=10, what="the current run's call")
        sandbox.control.clear_faults("sms-primary")
        late = notification_send_claimed(notification=stale, vendors=channel_vendors(channel="sms"))
    finally:
        racing.join()

    assert late.status == "taken_over"
    assert len(sandbox.control.messages("sms-primary", to="+447911000106")) == 2
    settled = Notification.objects.get(pk=notification.pk)
    assert settled.status == "sent" and settled.possible_duplicate is True
