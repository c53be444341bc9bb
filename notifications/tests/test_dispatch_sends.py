"""The dispatch task's own sends: sent inline, a retry through the channel's queue or left to
the sweeper, handed to the queues when a send breaks, swept when the dispatch was lost."""

from __future__ import annotations

import pytest
from django.utils import timezone

from harness.processes import broker_purge
from notifications import dispatch as dispatch_module
from notifications.configuration import template_save
from notifications.consent import suppression_add
from notifications.dispatch import trigger_dispatch, trigger_dispatch_claim
from notifications.lifecycle import lease_seconds
from notifications.models import (
    DeliveryAttempt,
    EventType,
    Notification,
    NotificationTemplate,
    NotificationTrigger,
    SuppressionScope,
    SuppressionSource,
)
from notifications.routing import channel_vendors
from notifications.sweeper import notifications_sweep
from notifications.tests.factories import make_trigger, stored_trigger
from notifications.tests.helpers import queued_sends, run_until_settled
from sandbox.testing import SandboxHandle

pytestmark = pytest.mark.django_db


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
    assert queued_sends(empty_broker) == []


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
    assert queued_sends(empty_broker) == [("sms", sms.pk, True)]


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
    assert queued_sends(empty_broker) == []


def test_with_inline_sends_off_the_dispatch_queues_each_send_on_its_channels_queue(
    vendors: dict, templates: None, sandbox: SandboxHandle, empty_broker: str, settings
) -> None:
    settings.DISPATCH_SENDS_INLINE = False
    trigger = make_trigger()

    trigger_dispatch(trigger_id=trigger.pk)

    notifications = {n.channel: n for n in Notification.objects.filter(trigger=trigger)}
    assert {n.status for n in notifications.values()} == {"pending"}
    assert queued_sends(empty_broker) == [("email", notifications["email"].pk, False), ("sms", notifications["sms"].pk, False)]
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
    assert queued_sends(empty_broker) == [("email", notifications["email"].pk, False), ("sms", notifications["sms"].pk, False)]
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
    assert queued_sends(empty_broker) == [("email", email.pk, False), ("sms", sms.pk, False)]


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
    assert queued_sends(empty_broker) == []


def test_notifications_claimed_by_a_dispatch_that_was_lost_are_swept_and_sent_once_the_lease_runs_out(
    vendors: dict, templates: None, sandbox: SandboxHandle, empty_broker: str, settings
) -> None:
    trigger = make_trigger()
    trigger_dispatch_claim(trigger_id=trigger.pk)  # ... and the worker is killed before it sends
    assert notifications_sweep() == 0  # leased: nothing is due yet

    long_ago = timezone.now() - timezone.timedelta(seconds=settings.NOTIFICATION_SWEEP_STALE_SECONDS + 1)
    Notification.objects.filter(trigger=trigger).update(lease_until=long_ago, updated_at=long_ago)
    assert notifications_sweep() == 2
    finals = [run_until_settled(pk) for _, pk, _ in queued_sends(empty_broker)]

    assert [(n.channel, n.status, n.delivery_count) for n in finals] == [("email", "sent", 2), ("sms", "sent", 2)]
    assert len(sandbox.control.messages("smtp-primary")) == 1 and len(sandbox.control.messages("sms-primary")) == 1


@pytest.mark.django_db(transaction=True)
def test_a_dispatch_and_both_its_sends_stay_within_their_query_budget(
    vendors: dict, templates: None, sandbox: SandboxHandle, django_assert_num_queries
) -> None:
    """The worker's whole share of a checkout (autocommit, as in a worker): the trigger's
    SELECT, the statement that marks it dispatched, inserts its notifications already claimed
    and answers their consent check, then for each send the attempt row and the result. No
    claim statements."""
    trigger_dispatch(trigger_id=stored_trigger().pk)  # warm: the template cache, the vendor lists
    trigger = stored_trigger()

    with django_assert_num_queries(6):
        trigger_dispatch(trigger_id=trigger.pk)

    assert sorted(Notification.objects.filter(trigger=trigger).values_list("channel", "status", "delivery_count")) == [
        ("email", "sent", 1), ("sms", "sent", 1),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_dispatch_from_the_row_the_listener_claimed_reads_no_trigger_and_sends_the_same(
    vendors: dict, templates: None, sandbox: SandboxHandle, django_assert_num_queries
) -> None:
    """The worker's listener hands its dispatch threads the row its claim returned: the budget
    above without the trigger's SELECT."""
    trigger_dispatch(trigger_id=stored_trigger().pk)  # warm, as above
    trigger = stored_trigger()
    claimed = NotificationTrigger.objects.get(pk=trigger.pk)

    with django_assert_num_queries(5) as captured:
        trigger_dispatch(trigger_id=trigger.pk, claimed=claimed)

    table = NotificationTrigger._meta.db_table
    assert not [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT") and f'FROM "{table}"' in q["sql"]]
    assert sorted(Notification.objects.filter(trigger=trigger).values_list("channel", "status", "delivery_count")) == [
        ("email", "sent", 1), ("sms", "sent", 1),
    ]
    assert len(sandbox.control.messages("smtp-primary")) == 2 and len(sandbox.control.messages("sms-primary")) == 2


def test_a_claimed_row_of_another_trigger_is_refused_before_anything_is_written(vendors: dict, templates: None) -> None:
    trigger, other = make_trigger(), make_trigger()

    with pytest.raises(ValueError, match="is not trigger"):
        trigger_dispatch(trigger_id=trigger.pk, claimed=other)

    assert not Notification.objects.filter(trigger__in=[trigger, other]).exists()
    assert [t.last_error for t in NotificationTrigger.objects.filter(pk__in=[trigger.pk, other.pk])] == ["", ""]


@pytest.mark.django_db(transaction=True)
def test_the_dispatch_task_suppresses_a_stopped_number_and_still_sends_the_email(
    vendors: dict, templates: None, sandbox: SandboxHandle, empty_broker: str
) -> None:
    """The dispatch reads consent once for both of its sends: the SMS to a number that sent
    STOP is settled `suppressed` without a vendor call; the email goes."""
    suppression_add(channel="sms", address="+447911123456", source=SuppressionSource.SMS_STOP)
    trigger = make_trigger(email="ana@example.com", phone="+447911123456")

    trigger_dispatch(trigger_id=trigger.pk)

    assert {n.channel: n.status for n in Notification.objects.filter(trigger=trigger)} == {"email": "sent", "sms": "suppressed"}
    assert sandbox.control.messages("sms-primary") == [] and sandbox.control.messages("sms-fallback") == []
    assert len(sandbox.control.messages("smtp-primary")) == 1


@pytest.mark.django_db(transaction=True)
def test_the_dispatch_task_sends_a_marketing_email_with_its_unsubscribe_headers_and_holds_an_unsubscribed_ones(
    vendors: dict, templates: None, sandbox: SandboxHandle, empty_broker: str, settings
) -> None:
    """Both answers of the consent check the dispatch's insert returns: whether the event is
    marketing (its email carries the one-click unsubscribe) and the suppression covering it."""
    settings.PUBLIC_BASE_URL = "https://beacon.example"
    EventType.objects.create(name="back_in_stock", category="marketing", sample_payload={"customer_name": "Ana"})
    template_save(template=NotificationTemplate(
        event_type="back_in_stock", channel="email", locale="en", subject="It is back", body_text="Hi {{ customer_name }}"))
    suppression_add(channel="email", address="bo@example.com", source=SuppressionSource.UNSUBSCRIBE,
                    scope=SuppressionScope.MARKETING)
    wanted = make_trigger(event_type="back_in_stock", email="ana@example.com")
    unsubscribed = make_trigger(event_type="back_in_stock", email="bo@example.com")

    trigger_dispatch(trigger_id=wanted.pk)
    trigger_dispatch(trigger_id=unsubscribed.pk)

    assert Notification.objects.get(trigger=wanted, channel="email").status == "sent"
    assert Notification.objects.get(trigger=unsubscribed, channel="email").status == "suppressed"
    [message] = sandbox.control.messages("smtp-primary")
    assert message["to"] == ["ana@example.com"]
    headers = {name: " ".join(value.split()) for name, value in message["headers"]}
    assert headers["List-Unsubscribe"].startswith("<https://beacon.example/unsubscribe/")
