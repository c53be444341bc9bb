"""Sending one notification, in-process against the sandbox's real SMTP and Twilio servers:
delivery, failover, retries, permanent failures, rate limits, leases, and a send's query budget."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.utils import timezone

from notifications import lifecycle, sending
from notifications.models import AttemptOutcome, DeliveryAttempt, Notification, NotificationStatus, Vendor
from notifications.routing import channel_vendors, vendor_circuit
from notifications.sending import notification_send
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch, run_until_settled
from notifications.vendors.base import VendorResult
from sandbox.testing import SandboxHandle

pytestmark = pytest.mark.django_db


def test_a_trigger_delivers_one_email_and_one_sms(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    trigger = make_trigger(email="ana@example.com", phone="+447911123456")

    sent = {channel: run_until_settled(n.pk) for channel, n in dispatch(trigger).items()}

    assert {channel: n.status for channel, n in sent.items()} == {"email": "sent", "sms": "sent"}
    emails = sandbox.control.messages("smtp-primary")
    sms = sandbox.control.messages("sms-primary")
    assert [m["to"] for m in emails] == [["ana@example.com"]]
    assert emails[0]["subject"] == "Order AB12CD34 confirmed"
    assert "Total: €47.30" in emails[0]["text"]
    assert [m["to"] for m in sms] == ["+447911123456"]
    assert "AB12CD34" in sms[0]["body"]
    assert sent["sms"].vendor.name == "sms-primary"
    assert sent["sms"].vendor_message_id.startswith("SM")


def test_it_falls_back_when_the_primary_sms_vendor_is_down_and_its_circuit_opens_then_closes(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    primary = vendors["sms-primary"]
    sandbox.control.set_faults("sms-primary", outage=True)

    results = [run_until_settled(dispatch(make_trigger())["sms"].pk) for _ in range(6)]

    assert {n.status for n in results} == {"sent"}
    assert {n.vendor.name for n in results} == {"sms-fallback"}
    assert len(sandbox.control.messages("sms-fallback")) == 6
    assert len(sandbox.control.messages("sms-primary")) == 0
    # The breaker opened after its minimum of 4 calls: later sends skipped the primary.
    assert vendor_circuit(primary).snapshot().state == "open"
    outcomes = list(DeliveryAttempt.objects.filter(vendor=primary).values_list("outcome", flat=True))
    assert outcomes.count(AttemptOutcome.TRANSIENT_ERROR) == 4
    assert AttemptOutcome.SKIPPED_CIRCUIT_OPEN in outcomes

    sandbox.control.set_faults("sms-primary", outage=False)
    import time

    time.sleep(0.6)  # the breaker's open wait (0.5 s in these tests)
    later = [run_until_settled(dispatch(make_trigger())["sms"].pk) for _ in range(3)]

    assert {n.vendor.name for n in later} == {"sms-primary"}
    assert vendor_circuit(primary).snapshot().state == "closed"


def test_every_vendor_failing_retries_with_growing_delays_then_ends_dead(
    vendors: dict, templates: None, sandbox: SandboxHandle, settings
) -> None:
    settings.NOTIFICATION_MAX_ATTEMPTS = 4
    settings.NOTIFICATION_RETRY_BASE_DELAY = 1.0
    Vendor.objects.filter(channel="sms").update(breaker_minimum_calls=100)
    for name in ("sms-primary", "sms-fallback"):
        sandbox.control.set_faults(name, failure_rate=1.0, error_status=503)
    notification = dispatch(make_trigger())["sms"]

    delays = []
    for _ in range(4):
        Notification.objects.filter(pk=notification.pk).update(next_attempt_at=None)
        before = timezone.now()
        outcome = notification_send(notification_id=notification.pk)
        if outcome.retry_in is not None:
            delays.append(outcome.retry_in)
            due = Notification.objects.get(pk=notification.pk).next_attempt_at
            assert (due - before).total_seconds() == pytest.approx(outcome.retry_in, abs=0.5)

    notification.refresh_from_db()
    assert notification.status == NotificationStatus.DEAD
    assert notification.attempt_count == 4
    assert "Retry budget spent" in notification.last_error
    # Full jitter between the base delay and an exponential cap: 1-1 s, 1-2 s, 1-4 s.
    assert len(delays) == 3
    for round_number, delay in enumerate(delays, start=1):
        assert 1.0 <= delay <= 2 ** (round_number - 1)
    assert DeliveryAttempt.objects.filter(notification=notification, outcome=AttemptOutcome.TRANSIENT_ERROR).count() == 8
    assert len(sandbox.control.messages("sms-primary")) == 0


def test_it_is_delivered_when_a_vendor_recovers_before_the_budget_is_spent(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    Vendor.objects.filter(channel="sms").update(breaker_minimum_calls=100)
    for name in ("sms-primary", "sms-fallback"):
        sandbox.control.set_faults(name, failure_rate=1.0, error_status=500)
    notification = dispatch(make_trigger())["sms"]
    assert notification_send(notification_id=notification.pk).status == "retrying"

    sandbox.control.clear_faults("sms-fallback")
    final = run_until_settled(notification.pk)

    assert final.status == "sent"
    assert final.vendor.name == "sms-fallback"
    assert final.attempt_count == 2
    assert len(sandbox.control.messages("sms-fallback")) == 1


def test_an_invalid_number_ends_failed_after_one_attempt(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    notification = dispatch(make_trigger(phone="+15005550001"))["sms"]

    final = run_until_settled(notification.pk)

    assert final.status == NotificationStatus.FAILED
    attempts = list(DeliveryAttempt.objects.filter(notification=final))
    assert [(a.vendor.name, a.outcome, a.vendor_code) for a in attempts] == [
        ("sms-primary", AttemptOutcome.PERMANENT_ERROR, "21211")
    ]
    assert len(sandbox.control.messages("sms-fallback")) == 0
    # A recipient's fault is not the vendor's: the breaker did not count it as a failure.
    assert vendor_circuit(vendors["sms-primary"]).snapshot().failures == 0


def test_a_sent_notification_is_never_sent_again(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    notification = dispatch(make_trigger())["sms"]
    run_until_settled(notification.pk)

    outcome = notification_send(notification_id=notification.pk)

    assert outcome.status == "sent"
    assert outcome.retry_in is None
    assert DeliveryAttempt.objects.filter(notification=notification).count() == 1


def test_a_timeout_fails_over_and_flags_a_possible_duplicate(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    sandbox.control.set_faults("sms-primary", hang=True)

    final = run_until_settled(dispatch(make_trigger())["sms"].pk)

    assert final.status == "sent"
    assert final.vendor.name == "sms-fallback"
    assert final.possible_duplicate is True
    outcomes = list(DeliveryAttempt.objects.filter(notification=final).values_list("vendor__name", "outcome"))
    assert outcomes == [("sms-primary", AttemptOutcome.TIMEOUT), ("sms-fallback", AttemptOutcome.SENT)]


def test_when_every_vendor_is_rate_limited_the_send_is_delayed_not_failed(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    Vendor.objects.filter(channel="sms").update(rate_limit_per_second=0.5, rate_limit_burst=1)
    first, second = (dispatch(make_trigger())["sms"] for _ in range(2))
    assert run_until_settled(first.pk, max_runs=1).status == "sent"
    run_until_settled(second.pk, max_runs=1)  # spends the fallback's only permit... or is sent by it
    third = dispatch(make_trigger())["sms"]

    outcome = notification_send(notification_id=third.pk)

    assert outcome.status == "retrying"
    assert 0 < outcome.retry_in <= 2.5
    third.refresh_from_db()
    assert third.attempt_count == 0  # a delay, not a failed round
    assert set(DeliveryAttempt.objects.filter(notification=third).values_list("outcome", flat=True)) == {
        AttemptOutcome.RATE_LIMITED
    }


@override_settings(NOTIFICATION_MAX_DELIVERIES=3)
def test_a_notification_whose_task_keeps_dying_ends_dead(vendors: dict, templates: None) -> None:
    notification = dispatch(make_trigger())["sms"]
    # Three workers claimed it and died (their leases expired without a result).
    Notification.objects.filter(pk=notification.pk).update(
        status=NotificationStatus.SENDING, delivery_count=3, lease_until=timezone.now()
    )

    outcome = notification_send(notification_id=notification.pk)

    assert outcome.status == NotificationStatus.DEAD
    assert "poison" in Notification.objects.get(pk=notification.pk).last_error


def test_a_run_whose_lease_was_taken_over_records_its_attempt_but_not_its_result(
    vendors: dict, templates: None
) -> None:
    """A worker stalled past its lease (GC pause, frozen VM) and another run claimed the
    notification: the stale run's success completes its own attempt row and leaves the
    notification to the run that holds it now."""
    notification = dispatch(make_trigger())["sms"]
    sms_vendors = channel_vendors(channel="sms")
    stale, _ = lifecycle.notification_claim(notification_id=notification.pk, vendors=sms_vendors)
    Notification.objects.filter(pk=notification.pk).update(lease_until=timezone.now() - timezone.timedelta(seconds=1))
    current, _ = lifecycle.notification_claim(notification_id=notification.pk, vendors=sms_vendors)
    assert (stale.delivery_count, current.delivery_count) == (1, 2)
    attempt = sending._attempt_begin(stale, sms_vendors[0])

    lifecycle.notification_settle_sent(
        notification=stale, accepted=lifecycle.Accepted(attempt, 0.05, VendorResult(message_id="SMstale")),
        possible_duplicate=False,
    )

    attempt.refresh_from_db()
    assert (attempt.outcome, attempt.vendor_message_id) == (AttemptOutcome.SENT, "SMstale")
    row = Notification.objects.get(pk=notification.pk)
    assert (row.status, row.delivery_count, row.vendor_message_id) == (NotificationStatus.SENDING, 2, "")
    assert row.lease_until is not None


def test_a_notification_claimed_by_a_live_run_is_not_sent_by_another(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    notification = dispatch(make_trigger())["sms"]
    Notification.objects.filter(pk=notification.pk).update(
        status=NotificationStatus.SENDING, lease_until=timezone.now() + timezone.timedelta(seconds=30)
    )

    outcome = notification_send(notification_id=notification.pk)

    assert outcome.status == "leased"
    assert outcome.retry_in > 25
    assert len(sandbox.control.messages("sms-primary")) == 0


def test_a_successful_send_stays_within_its_query_budget(
    vendors: dict, templates: None, sandbox: SandboxHandle, django_assert_max_num_queries
) -> None:
    """The send path is the workers' hot loop: the claim (which returns the row), the consent
    check (one indexed lookup of the suppression list), the attempt written before the call,
    and one statement completing the attempt with the result. The vendor list is cached per
    process and the content was rendered at dispatch."""
    run_until_settled(dispatch(make_trigger())["sms"].pk)  # warm: vendor list, adapter built
    notification = dispatch(make_trigger())["sms"]

    with django_assert_max_num_queries(4):
        outcome = notification_send(notification_id=notification.pk, channel="sms")

    assert outcome.status == "sent"
    notification.refresh_from_db()
    [attempt] = notification.attempts.all()
    assert (attempt.outcome, attempt.vendor_message_id) == ("sent", notification.vendor_message_id)
    assert attempt.vendor_message_id.startswith("SM") and attempt.duration_ms > 0
    assert (notification.status, notification.vendor, notification.attempt_count) == ("sent", attempt.vendor, 1)
    assert notification.lease_until is None and notification.sent_at is not None
