"""The outbox relay against a real Redis broker: what it publishes again, and what it leaves in
a dispatch queue that runs behind (notifications/outbox.py, `_relay_due`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from harness.processes import broker_purge, broker_queued_trigger_ids
from notifications.models import NotificationTrigger
from notifications.outbox import TRIGGER_DISPATCH_TASK, outbox_relay
from notifications.publisher import queue_depth, task_publish
from notifications.tests.factories import stored_trigger

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture
def broker(settings) -> Iterator[str]:
    """The suite's broker with its queues emptied (no worker consumes them in these tests)."""
    broker_purge(settings.CELERY_BROKER_URL)
    yield settings.CELERY_BROKER_URL
    broker_purge(settings.CELERY_BROKER_URL)


def handed_over(seconds_ago: float, *, queued: bool) -> NotificationTrigger:
    """An undispatched trigger handed to the broker `seconds_ago`, past the relay's grace;
    `queued`: its dispatch message still waits in the queue (else the broker lost it)."""
    now = timezone.now()
    trigger = stored_trigger()
    NotificationTrigger.objects.filter(pk=trigger.pk).update(
        handed_over_at=now - timedelta(seconds=seconds_ago), relay_after=now - timedelta(seconds=1)
    )
    if queued:
        task_publish(TRIGGER_DISPATCH_TASK, args=[trigger.pk])
    return trigger


def test_a_queue_running_behind_is_not_published_twice_but_what_the_broker_lost_is(broker: str) -> None:
    lost = [handed_over(90, queued=False), handed_over(80, queued=False)]
    waiting = [handed_over(40, queued=True), handed_over(30, queued=True), handed_over(20, queued=True)]
    assert queue_depth("default") == 3

    assert outbox_relay() == 2

    # Only the lost ones were added; the waiting ones are in the queue once each.
    assert sorted(broker_queued_trigger_ids(broker)) == sorted(t.pk for t in lost + waiting)
    republished = NotificationTrigger.objects.filter(pk__in=[t.pk for t in lost])
    assert all(t.publish_count == 1 and t.handed_over_at > timezone.now() - timedelta(seconds=5) for t in republished)
    assert not NotificationTrigger.objects.filter(pk__in=[t.pk for t in waiting], publish_count__gt=0).exists()
    assert outbox_relay() == 0  # the republished ones are leased; the waiting ones still queued


def test_a_broker_restarted_empty_has_every_due_trigger_published_again(broker: str) -> None:
    triggers = [handed_over(40, queued=True), handed_over(30, queued=True)]
    broker_purge(broker)  # Redis came back without its data
    assert queue_depth("default") == 0

    assert outbox_relay() == 2
    assert sorted(broker_queued_trigger_ids(broker)) == sorted(t.pk for t in triggers)


def test_a_trigger_never_handed_over_is_published_however_deep_the_queue(broker: str) -> None:
    waiting = [handed_over(20, queued=True), handed_over(10, queued=True)]
    never = stored_trigger()  # committed while no listener listened (relay_after: now)
    assert never.handed_over_at is None

    assert outbox_relay() == 1
    assert sorted(broker_queued_trigger_ids(broker)) == sorted(t.pk for t in [*waiting, never])


def test_with_the_webs_hand_off_a_triggers_creation_stands_for_its_hand_over(broker: str, settings) -> None:
    settings.TRIGGER_HANDOFF_VIA = "web"  # the web publishes at commit and records no hand-over time
    now = timezone.now()
    lost, waiting = stored_trigger(), stored_trigger()
    NotificationTrigger.objects.filter(pk=lost.pk).update(created_at=now - timedelta(seconds=60), relay_after=now)
    NotificationTrigger.objects.filter(pk=waiting.pk).update(created_at=now - timedelta(seconds=30), relay_after=now)
    task_publish(TRIGGER_DISPATCH_TASK, args=[waiting.pk])

    assert outbox_relay() == 1
    assert sorted(broker_queued_trigger_ids(broker)) == sorted([lost.pk, waiting.pk])


def test_a_broker_that_does_not_answer_has_no_depth() -> None:
    from config.celery import app

    original = app.conf.broker_read_url
    app.conf.broker_read_url = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        assert queue_depth("default") is None
    finally:
        app.conf.broker_read_url = original
