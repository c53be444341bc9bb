"""The delivery engine, run in-process against the sandbox's real SMTP and Twilio servers."""

from __future__ import annotations

import base64
import json
import threading

import pytest
import redis
from django.db import DataError, connection
from django.test import override_settings
from django.utils import timezone

from harness.processes import broker_purge
from notifications import dispatch as dispatch_module
from notifications import lifecycle, sending
from notifications.configuration import template_save
from notifications.dispatch import trigger_dispatch, trigger_dispatch_claim, trigger_dispatch_create
from notifications.lifecycle import lease_seconds
from notifications.models import (
    AttemptOutcome,
    DeliveryAttempt,
    Notification,
    NotificationStatus,
    NotificationTemplate,
    NotificationTrigger,
    Vendor,
)
from notifications.routing import channel_vendors, vendor_circuit
from notifications.sending import notification_send
from notifications.sweeper import notifications_sweep
from notifications.template_cache import template_cache_invalidate
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch, run_until_settled
from notifications.vendors.base import VendorResult
from sandbox.testing import SandboxHandle

pytestmark = pytest.mark.django_db


def stored_trigger() -> NotificationTrigger:
    """A trigger row as a committed checkout leaves it, without publishing it (for tests that
    commit: trigger_publish would hand it to the broker at once)."""
    return NotificationTrigger.objects.create(
        event_type="order_confirmed", payload={"order_ref": "AB12CD34", "lines": []},
        recipients={"email": "ana@example.com", "sms": "+447911123456"}, relay_after=timezone.now(),
    )


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


def test_locale_falls_back_from_pt_br_to_pt(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    trigger = make_trigger(locale="pt-BR")

    run_until_settled(dispatch(trigger)["sms"].pk)

    assert "pedido AB12CD34 confirmado" in sandbox.control.messages("sms-primary")[0]["body"]


def test_unknown_locale_falls_back_to_the_default(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    run_until_settled(dispatch(make_trigger(locale="de"))["sms"].pk)

    assert "order AB12CD34 confirmed" in sandbox.control.messages("sms-primary")[0]["body"]


def test_html_email_escapes_hostile_names(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    run_until_settled(dispatch(make_trigger(name="<script>alert(1)</script>"))["email"].pk)

    html = sandbox.control.messages("smtp-primary")[0]["html"]
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


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


def test_dispatching_a_trigger_twice_sends_nothing_twice(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    trigger = make_trigger()
    first = trigger_dispatch_create(trigger_id=trigger.pk)
    for notification_id in first:
        run_until_settled(notification_id)

    second = trigger_dispatch_create(trigger_id=trigger.pk)
    for notification_id in first:
        notification_send(notification_id=notification_id)

    assert second == {}
    assert Notification.objects.filter(trigger=trigger).count() == 2
    assert len(sandbox.control.messages("sms-primary")) == 1
    assert len(sandbox.control.messages("smtp-primary")) == 1


def test_a_sent_notification_is_never_sent_again(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    notification = dispatch(make_trigger())["sms"]
    run_until_settled(notification.pk)

    outcome = notification_send(notification_id=notification.pk)

    assert outcome.status == "sent"
    assert outcome.retry_in is None
    assert DeliveryAttempt.objects.filter(notification=notification).count() == 1


def test_a_template_edit_is_used_by_the_very_next_send(
    vendors: dict, templates: None, sandbox: SandboxHandle, django_capture_on_commit_callbacks
) -> None:
    run_until_settled(dispatch(make_trigger())["sms"].pk)  # warms the cache with the old text
    template = NotificationTemplate.objects.get(event_type="order_confirmed", channel="sms", locale="en")
    template.body_text = "NEW TEXT for {{ order_ref }}"

    with django_capture_on_commit_callbacks(execute=True):
        template_save(template=template, saved_by="tester")
    run_until_settled(dispatch(make_trigger())["sms"].pk)

    bodies = [m["body"] for m in sandbox.control.messages("sms-primary")]
    assert bodies[-1] == "NEW TEXT for AB12CD34"
    assert template.version == 2


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


def test_dispatch_stores_each_notification_whole_and_marks_the_trigger_dispatched(templates: None) -> None:
    trigger = make_trigger(email="ana@example.com", phone="+447911123456", locale="pt-BR")

    created = dispatch(trigger)

    trigger.refresh_from_db()
    assert trigger.dispatched_at is not None
    assert set(created) == {"email", "sms"}
    email, sms = created["email"], created["sms"]
    assert (email.recipient, sms.recipient) == ("ana@example.com", "+447911123456")
    assert email.status == sms.status == NotificationStatus.PENDING
    assert email.event_type == "order_confirmed" and email.locale == "pt-BR"
    assert email.public_id != sms.public_id
    assert email.rendered_subject and "AB12CD34" in email.rendered_text and email.rendered_html
    assert "AB12CD34" in sms.rendered_text and not sms.rendered_html
    assert email.template_version and sms.template_version
    assert trigger.created_at <= email.created_at <= email.updated_at <= trigger.dispatched_at
    assert (email.attempt_count, email.delivery_count, email.vendor_id, email.sent_at) == (0, 0, None, None)


def test_a_template_that_fails_to_render_stores_its_notification_failed(templates: None) -> None:
    NotificationTemplate.objects.filter(event_type="order_confirmed", channel="sms").update(body_text="{{ 1 // 0 }}")
    template_cache_invalidate(event_type="order_confirmed", channel="sms")
    trigger = make_trigger()

    queued = trigger_dispatch_create(trigger_id=trigger.pk)

    sms = Notification.objects.get(trigger=trigger, channel="sms")
    assert sms.status == NotificationStatus.FAILED
    assert "ZeroDivisionError" in sms.last_error
    assert set(queued.values()) == {"email"}  # the email still goes


def test_dispatching_a_trigger_that_does_not_exist_creates_nothing(templates: None) -> None:
    assert trigger_dispatch_create(trigger_id=987654321) == {}
    assert not Notification.objects.exists()


def test_dispatch_keeps_rows_written_before_it_and_adds_what_is_missing(templates: None) -> None:
    trigger = make_trigger(phone="+447911123456")
    by_hand = Notification.objects.create(
        trigger=trigger, event_type=trigger.event_type, channel="sms", recipient="+447911123456", locale="en",
        rendered_text="written by an operator",
    )

    queued = trigger_dispatch_create(trigger_id=trigger.pk)

    trigger.refresh_from_db()
    assert trigger.dispatched_at is not None
    assert Notification.objects.filter(trigger=trigger).count() == 2
    assert Notification.objects.get(pk=by_hand.pk).rendered_text == "written by an operator"
    assert set(queued.values()) == {"email", "sms"}
    assert by_hand.pk in queued


def test_a_recipient_too_long_to_store_is_refused_before_anything_is_written(templates: None) -> None:
    with pytest.raises(ValueError, match="email address is 262 characters long; at most 254"):
        make_trigger(email="a" * 250 + "@example.com")

    assert not NotificationTrigger.objects.exists()


def test_a_stored_recipient_too_long_fails_the_dispatch_and_is_never_cut_to_fit(templates: None) -> None:
    # A trigger written around trigger_publish: a cut address would be someone else's.
    trigger = stored_trigger()
    NotificationTrigger.objects.filter(pk=trigger.pk).update(recipients={"email": "a" * 250 + "@example.com"})

    with pytest.raises(DataError):
        trigger_dispatch_create(trigger_id=trigger.pk)

    trigger.refresh_from_db()
    assert trigger.dispatched_at is None
    assert not Notification.objects.filter(trigger=trigger).exists()


@pytest.mark.django_db(transaction=True)
def test_racing_dispatches_of_one_trigger_create_its_notifications_once(templates: None) -> None:
    trigger = stored_trigger()
    racers = 4
    start = threading.Barrier(racers)
    results: list[dict[int, str]] = []

    def race() -> None:
        try:
            start.wait()
            results.append(trigger_dispatch_create(trigger_id=trigger.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    rows = dict(Notification.objects.filter(trigger=trigger).values_list("pk", "channel"))
    assert sorted(rows.values()) == ["email", "sms"]
    assert results == [rows] * racers  # every racer queues the same two, none creates more


def test_a_trigger_without_templates_creates_no_notifications(vendors: dict) -> None:
    assert trigger_dispatch_create(trigger_id=make_trigger(event_type="unknown_event").pk) == {}


def test_a_vendor_whose_secrets_cannot_be_read_is_skipped_for_the_fallback(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    Vendor.objects.filter(name="sms-primary").update(secrets_encrypted="not-a-fernet-token")

    final = run_until_settled(dispatch(make_trigger())["sms"].pk)

    assert final.status == "sent"
    assert final.vendor.name == "sms-fallback"
    attempt = DeliveryAttempt.objects.get(notification=final, vendor__name="sms-primary")
    assert attempt.outcome == AttemptOutcome.TRANSIENT_ERROR
    assert "misconfigured" in attempt.error


def test_a_template_edited_in_the_admin_is_used_by_the_very_next_send(
    vendors: dict, templates: None, sandbox: SandboxHandle, admin_client, django_capture_on_commit_callbacks
) -> None:
    from django.urls import reverse

    run_until_settled(dispatch(make_trigger())["sms"].pk)  # the old text is cached now
    template = NotificationTemplate.objects.get(event_type="order_confirmed", channel="sms", locale="en")
    form = {
        "event_type": "order_confirmed", "channel": "sms", "locale": "en", "is_active": "on", "subject": "",
        "body_text": "Edited in the admin: {{ order_ref }}", "body_html": "",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
    }

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:notifications_notificationtemplate_change", args=[template.pk]), form)
    assert response.status_code == 302
    run_until_settled(dispatch(make_trigger())["sms"].pk)

    assert sandbox.control.messages("sms-primary")[-1]["body"] == "Edited in the admin: AB12CD34"


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


@pytest.mark.django_db(transaction=True)
def test_a_dispatch_stays_within_its_query_budget(templates: None, django_assert_num_queries) -> None:
    """The dispatch is in every checkout's path: one SELECT of the trigger, and one statement
    that marks it dispatched and inserts its notifications (autocommit, as in a worker). The
    templates come from the cache."""
    trigger_dispatch_create(trigger_id=stored_trigger().pk)  # warm: the template cache
    trigger = stored_trigger()

    with django_assert_num_queries(2):
        queued = trigger_dispatch_create(trigger_id=trigger.pk)

    assert sorted(queued.values()) == ["email", "sms"]
    assert Notification.objects.filter(trigger=trigger, status=NotificationStatus.PENDING).count() == 2


def test_dispatch_stores_the_rendered_text_and_later_template_edits_do_not_change_it(
    vendors: dict, templates: None, sandbox: SandboxHandle, django_capture_on_commit_callbacks
) -> None:
    notification = dispatch(make_trigger())["sms"]
    assert notification.rendered_text == "Beacon Shop: order AB12CD34 confirmed, total €47.30. Thank you, Ana!"
    assert notification.template_version

    template = NotificationTemplate.objects.get(event_type="order_confirmed", channel="sms", locale="en")
    template.body_text = "Changed after dispatch"
    with django_capture_on_commit_callbacks(execute=True):  # the template cache is invalidated too
        template_save(template=template, saved_by="operator")
    final = run_until_settled(notification.pk)

    assert final.status == "sent"
    assert sandbox.control.messages("sms-primary")[-1]["body"] == notification.rendered_text


def test_a_second_dispatch_creates_nothing_and_queues_only_what_is_still_pending(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    trigger = make_trigger()
    first = trigger_dispatch_create(trigger_id=trigger.pk)
    sms = next(pk for pk, channel in first.items() if channel == "sms")
    run_until_settled(sms)

    again = trigger_dispatch_create(trigger_id=trigger.pk)

    assert Notification.objects.filter(trigger=trigger).count() == 2
    assert set(again) == set(first) - {sms}


def test_a_vendor_disabled_in_this_process_is_skipped_by_the_very_next_send(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    run_until_settled(dispatch(make_trigger())["sms"].pk)  # the vendor list is cached now
    primary = Vendor.objects.get(name="sms-primary")
    primary.enabled = False
    primary.save()

    final = run_until_settled(dispatch(make_trigger())["sms"].pk)

    assert final.vendor.name == "sms-fallback"


def test_a_vendor_change_made_by_another_process_arrives_within_the_cache_time(
    vendors: dict, templates: None, sandbox: SandboxHandle, settings
) -> None:
    settings.NOTIFICATION_VENDOR_CACHE_SECONDS = 3600
    run_until_settled(dispatch(make_trigger())["sms"].pk)
    Vendor.objects.filter(name="sms-primary").update(enabled=False)  # no signal here: as from another process

    assert run_until_settled(dispatch(make_trigger())["sms"].pk).vendor.name == "sms-primary"  # still cached
    settings.NOTIFICATION_VENDOR_CACHE_SECONDS = 0
    assert run_until_settled(dispatch(make_trigger())["sms"].pk).vendor.name == "sms-fallback"


def _queued_sends(broker_url: str) -> list[tuple[str, int, bool]]:
    """(queue, notification id, has a countdown) of every send message waiting on the broker."""
    client = redis.Redis.from_url(broker_url)
    queued = []
    for queue in ("email", "sms"):
        for raw in client.lrange(queue, 0, -1):
            message = json.loads(raw)
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            queued.append((queue, args[0], message["headers"].get("eta") is not None))
    return sorted(queued)


@pytest.fixture
def empty_broker(settings) -> str:
    broker_purge(settings.CELERY_BROKER_URL)
    yield settings.CELERY_BROKER_URL
    broker_purge(settings.CELERY_BROKER_URL)


def test_the_dispatch_task_sends_both_notifications_itself_and_queues_nothing(
    vendors: dict, templates: None, sandbox: SandboxHandle, empty_broker: str
) -> None:
    trigger = make_trigger(email="ana@example.com", phone="+447911123456")

    pending = trigger_dispatch(trigger_id=trigger.pk)

    notifications = Notification.objects.filter(trigger=trigger)
    assert sorted(pending) == sorted(n.pk for n in notifications)
    assert {n.channel: (n.status, n.vendor.name) for n in notifications} == {
        "email": ("sent", "smtp-primary"), "sms": ("sent", "sms-primary"),
    }
    assert [m["to"] for m in sandbox.control.messages("smtp-primary")] == [["ana@example.com"]]
    assert [m["to"] for m in sandbox.control.messages("sms-primary")] == ["+447911123456"]
    assert _queued_sends(empty_broker) == []


def test_a_first_attempt_that_fails_everywhere_is_retried_through_the_channels_queue(
    vendors: dict, templates: None, sandbox: SandboxHandle, empty_broker: str
) -> None:
    for name in ("sms-primary", "sms-fallback"):
        sandbox.control.set_faults(name, failure_rate=1.0, error_status=503)
    trigger = make_trigger()

    trigger_dispatch(trigger_id=trigger.pk)

    sms = Notification.objects.get(trigger=trigger, channel="sms")
    assert sms.status == "retrying"
    assert Notification.objects.get(trigger=trigger, channel="email").status == "sent"
    assert _queued_sends(empty_broker) == [("sms", sms.pk, True)]


def test_a_retry_longer_than_the_countdown_cap_is_left_to_the_sweeper(
    vendors: dict, templates: None, sandbox: SandboxHandle, empty_broker: str, settings
) -> None:
    settings.NOTIFICATION_RETRY_BASE_DELAY = 30
    settings.NOTIFICATION_MAX_COUNTDOWN = 10
    for name in ("sms-primary", "sms-fallback"):
        sandbox.control.set_faults(name, failure_rate=1.0, error_status=503)
    trigger = make_trigger()

    trigger_dispatch(trigger_id=trigger.pk)

    assert Notification.objects.get(trigger=trigger, channel="sms").status == "retrying"
    assert _queued_sends(empty_broker) == []


def test_with_inline_sends_off_the_dispatch_queues_each_send_on_its_channels_queue(
    vendors: dict, templates: None, sandbox: SandboxHandle, empty_broker: str, settings
) -> None:
    settings.DISPATCH_SENDS_INLINE = False
    trigger = make_trigger()

    trigger_dispatch(trigger_id=trigger.pk)

    notifications = {n.channel: n for n in Notification.objects.filter(trigger=trigger)}
    assert {n.status for n in notifications.values()} == {"pending"}
    assert _queued_sends(empty_broker) == [("email", notifications["email"].pk, False), ("sms", notifications["sms"].pk, False)]
    assert sandbox.control.messages("smtp-primary") == [] and sandbox.control.messages("sms-primary") == []


def test_a_send_that_breaks_hands_itself_and_the_rest_to_their_queues_and_the_task_fails(
    vendors: dict, templates: None, sandbox: SandboxHandle, empty_broker: str, monkeypatch
) -> None:
    """A bug or a lost database mid-send: the task fails loudly, and the notifications not yet
    sent are queued at once instead of waiting a minute for the sweeper."""
    real_send = dispatch_module.notification_send_claimed

    def email_breaks(*, notification: Notification, vendors: list):
        if notification.channel == "email":
            raise RuntimeError("connection to the database lost")
        return real_send(notification=notification, vendors=vendors)

    monkeypatch.setattr(dispatch_module, "notification_send_claimed", email_breaks)
    trigger = make_trigger()

    with pytest.raises(RuntimeError, match="database lost"):
        trigger_dispatch(trigger_id=trigger.pk)

    notifications = {n.channel: n for n in Notification.objects.filter(trigger=trigger)}
    # The dispatch's claims are given back, so the queued sends can take them at once.
    assert {(n.status, n.lease_until) for n in notifications.values()} == {("pending", None)}
    assert _queued_sends(empty_broker) == [("email", notifications["email"].pk, False), ("sms", notifications["sms"].pk, False)]
    assert sandbox.control.messages("sms-primary") == []


class WorkerStopped(BaseException):
    """What a worker's warm shutdown or hard time limit raises in a task: not an Exception."""


def test_a_send_interrupted_during_its_vendor_call_keeps_its_claim_and_the_rest_are_given_back(
    vendors: dict, templates: None, sandbox: SandboxHandle, empty_broker: str, monkeypatch
) -> None:
    """The email's vendor may have accepted (its attempt is still open), so it is not handed
    back as pending: it waits out its lease, and the send that takes it over closes the attempt
    as outcome unknown. The SMS, not started, is pending again and queued."""

    def interrupted(self, message):
        raise WorkerStopped

    monkeypatch.setattr("notifications.vendors.smtp.SmtpAdapter.send", interrupted)
    trigger = make_trigger()

    with pytest.raises(WorkerStopped):
        trigger_dispatch(trigger_id=trigger.pk)

    email = Notification.objects.get(trigger=trigger, channel="email")
    sms = Notification.objects.get(trigger=trigger, channel="sms")
    assert (email.status, email.delivery_count) == ("sending", 1) and email.lease_until > timezone.now()
    assert list(DeliveryAttempt.objects.filter(notification=email).values_list("outcome", flat=True)) == [""]
    assert (sms.status, sms.lease_until) == ("pending", None)
    assert _queued_sends(empty_broker) == [("email", email.pk, False), ("sms", sms.pk, False)]


def test_a_dispatch_inserts_its_notifications_claimed_with_leases_that_cover_the_sends_before_them(
    vendors: dict, templates: None
) -> None:
    trigger = make_trigger()
    before = timezone.now()

    dispatched = trigger_dispatch_claim(trigger_id=trigger.pk)

    email_lease = lease_seconds(channel_vendors(channel="email"))
    sms_lease = lease_seconds(channel_vendors(channel="sms"))
    assert [n.channel for n in dispatched.claimed] == ["email", "sms"] and dispatched.pending == {}
    rows = {n.channel: n for n in Notification.objects.filter(trigger=trigger)}
    for claimed in dispatched.claimed:  # the instances handed to the sends are the rows as stored
        stored = rows[claimed.channel]
        assert (claimed.pk, claimed.public_id, claimed.created_at) == (stored.pk, stored.public_id, stored.created_at)
        assert (stored.status, stored.delivery_count, stored.lease_until) == ("sending", 1, claimed.lease_until)
    assert abs((rows["email"].lease_until - before).total_seconds() - email_lease) < 1
    assert abs((rows["sms"].lease_until - rows["email"].lease_until).total_seconds() - sms_lease) < 0.01


def test_dispatching_a_trigger_again_while_its_first_dispatch_sends_sends_nothing(
    vendors: dict, templates: None, sandbox: SandboxHandle, empty_broker: str
) -> None:
    """A duplicate dispatch message (the relay and the web both published it) arriving while
    the first dispatch still holds its claims."""
    trigger = make_trigger()
    trigger_dispatch_claim(trigger_id=trigger.pk)

    assert trigger_dispatch(trigger_id=trigger.pk) == []

    assert sandbox.control.messages("smtp-primary") == [] and sandbox.control.messages("sms-primary") == []
    assert _queued_sends(empty_broker) == []


def test_notifications_claimed_by_a_dispatch_that_was_lost_are_swept_and_sent_once_the_lease_runs_out(
    vendors: dict, templates: None, sandbox: SandboxHandle, empty_broker: str, settings
) -> None:
    trigger = make_trigger()
    trigger_dispatch_claim(trigger_id=trigger.pk)  # ... and the worker is killed before it sends
    assert notifications_sweep() == 0  # leased: nothing is due yet

    long_ago = timezone.now() - timezone.timedelta(seconds=settings.NOTIFICATION_SWEEP_STALE_SECONDS + 1)
    Notification.objects.filter(trigger=trigger).update(lease_until=long_ago, updated_at=long_ago)
    assert notifications_sweep() == 2
    finals = [run_until_settled(pk) for _, pk, _ in _queued_sends(empty_broker)]

    assert [(n.channel, n.status, n.delivery_count) for n in finals] == [("email", "sent", 2), ("sms", "sent", 2)]
    assert len(sandbox.control.messages("smtp-primary")) == 1 and len(sandbox.control.messages("sms-primary")) == 1


@pytest.mark.django_db(transaction=True)
def test_a_dispatch_and_both_its_sends_stay_within_their_query_budget(
    vendors: dict, templates: None, sandbox: SandboxHandle, django_assert_num_queries
) -> None:
    """The worker's whole share of a checkout (autocommit, as in a worker): the trigger's
    SELECT, the statement that marks it dispatched and inserts its notifications already
    claimed, then for each send the consent check, the attempt row and the result. No claim
    statements."""
    trigger_dispatch(trigger_id=stored_trigger().pk)  # warm: the template cache, the vendor lists
    trigger = stored_trigger()

    with django_assert_num_queries(8):
        trigger_dispatch(trigger_id=trigger.pk)

    assert sorted(Notification.objects.filter(trigger=trigger).values_list("channel", "status", "delivery_count")) == [
        ("email", "sent", 1), ("sms", "sent", 1),
    ]
