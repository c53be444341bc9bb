"""Dispatching a trigger: the notifications it stores, once, whatever races, repeats or fails;
and the dispatch's query budget."""

from __future__ import annotations

import threading

import pytest
from django.db import DataError, connection

from notifications.configuration import template_save
from notifications.dispatch import trigger_dispatch_create
from notifications.models import Notification, NotificationStatus, NotificationTemplate, NotificationTrigger
from notifications.sending import notification_send
from notifications.template_cache import template_cache_invalidate
from notifications.tests.factories import make_trigger, stored_trigger
from notifications.tests.helpers import dispatch, run_until_settled
from sandbox.testing import SandboxHandle

pytestmark = pytest.mark.django_db


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
