"""A send whose claim another run took over while it was stuck must not go on to the next vendor.

Found by `make cluster-test` (scenario 1): a worker host cut off the network in the middle of a
vendor call stays stuck past its lease; the sweeper re-queues the notification and another host
sends it. When the cable is back, the first worker's call ends as an unknown outcome and, without
this rule, it failed over to the fallback vendor: a second copy that nothing flagged, since its
settle found the notification no longer its own.
"""

from __future__ import annotations

import threading

import pytest
from django.db.models import F

from notifications.models import AttemptOutcome, DeliveryAttempt, Notification
from notifications.sending import notification_send
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
