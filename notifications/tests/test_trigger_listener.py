"""The notify hand-off: a trigger's commit notifies PostgreSQL, a listener in the workers claims
and publishes it (notifications/trigger_listener.py). Real PostgreSQL sessions, a real Redis
broker, a real worker where the whole path matters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from checkout.tests.factories import VALID_CHECKOUT
from harness.database import current_database_url
from harness.processes import RedisServer, broker_purge, broker_queued_trigger_ids, free_port, wait_until
from notifications import publisher
from notifications.models import NotificationTrigger
from notifications.outbox import outbox_relay
from notifications.statements import TRIGGER_CHANNEL
from notifications.tests.factories import make_trigger
from notifications.trigger_listener import TriggerListener
from sandbox.testing import SandboxHandle

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fresh_publisher() -> Iterator[None]:
    """This process's bounded publisher built from the current settings, with no cool-down."""
    publisher._publisher_app.cache_clear()
    publisher.publisher_reset()
    yield
    publisher._publisher_app.cache_clear()
    publisher.publisher_reset()


@pytest.fixture
def start_listener(settings, fresh_publisher: None) -> Iterator[Callable[..., TriggerListener]]:
    """Starts trigger listeners in this process on the test database (once listening) and an
    emptied broker; checks after the test that each one stops."""
    broker_purge(settings.CELERY_BROKER_URL)
    started: list[TriggerListener] = []

    def start(**options: object) -> TriggerListener:
        listener = TriggerListener(dsn=current_database_url(), **options)
        listener.start()
        started.append(listener)
        wait_until(lambda: listener.listening, timeout=15, what="the listener to LISTEN")
        return listener

    yield start
    assert all(listener.stop() for listener in started)


def dead_broker_url(tmp_path: Path) -> str:
    broker = RedisServer(log_dir=tmp_path).start()
    broker.stop()  # really down: nothing listens on its port
    return broker.url()


def test_a_committed_checkout_is_dispatched_through_the_workers_listener_without_the_web_publishing(
    api: APIClient, start_worker, sandbox: SandboxHandle, settings, tmp_path: Path, fresh_publisher: None
) -> None:
    worker = start_worker()  # on the suite's broker; no beat, so no relay runs
    # Were the web to publish, it would find this broker down and hold back for its cool-down.
    settings.CELERY_BROKER_URL = dead_broker_url(tmp_path)
    publisher._publisher_app.cache_clear()

    response = api.post("/api/v1/checkouts/", VALID_CHECKOUT, format="json")

    assert response.status_code == 201
    wait_until(lambda: len(sandbox.control.messages("smtp-primary")) == 1, timeout=30, what="the email")
    wait_until(lambda: len(sandbox.control.messages("sms-primary")) == 1, timeout=30, what="the SMS")
    trigger = NotificationTrigger.objects.get()
    assert trigger.dispatched_at is not None and trigger.handed_over_at is not None
    assert trigger.publish_count == 0  # not the relay's doing
    assert not publisher.publisher_suppressed()  # the web never tried the broker
    worker.stop(timeout=20)
    assert worker.process.returncode == 0  # its listener let it shut down by itself


def test_only_a_committed_trigger_notifies(api: APIClient) -> None:
    with psycopg.connect(current_database_url(), autocommit=True) as listening:
        listening.execute(f"LISTEN {TRIGGER_CHANNEL}")

        with pytest.raises(RuntimeError), transaction.atomic():
            make_trigger()
            raise RuntimeError("the business change failed")
        response = api.post("/api/v1/checkouts/", VALID_CHECKOUT, format="json")

        heard = [notify.payload for notify in listening.notifies(timeout=2, stop_after=5)]
    committed = NotificationTrigger.objects.get()
    assert response.status_code == 201
    assert heard == [str(committed.pk)]


def test_two_listeners_hand_each_trigger_over_once(start_listener, settings) -> None:
    start_listener()
    start_listener()

    triggers = [make_trigger() for _ in range(150)]

    wanted = {trigger.pk for trigger in triggers}
    wait_until(lambda: len(broker_queued_trigger_ids(settings.CELERY_BROKER_URL)) >= len(wanted), timeout=30,
               what="every trigger published")
    published = Counter(broker_queued_trigger_ids(settings.CELERY_BROKER_URL))
    assert set(published) == wanted
    assert max(published.values()) == 1
    # Handed over by a listener, not counted as relay hand-overs (the dead-trigger count).
    assert NotificationTrigger.objects.filter(handed_over_at__isnull=False, publish_count=0).count() == len(wanted)


def test_a_listener_whose_session_is_killed_reconnects_and_hands_over_what_committed_meanwhile(
    start_listener, settings
) -> None:
    listener = start_listener(reconnect_delay_first=1.0)
    lost_pid = listener.backend_pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [lost_pid])
    wait_until(lambda: not listener.listening, timeout=15, what="the listener to notice")

    while_away = make_trigger()  # its notification reaches nobody

    wait_until(lambda: listener.listening, timeout=15, what="the listener to reconnect")
    assert listener.backend_pid != lost_pid
    wait_until(lambda: broker_queued_trigger_ids(settings.CELERY_BROKER_URL) == [while_away.pk], timeout=15,
               what="the trigger handed over")
    after = make_trigger()  # and it listens again
    wait_until(lambda: sorted(broker_queued_trigger_ids(settings.CELERY_BROKER_URL)) == [while_away.pk, after.pk], timeout=15,
               what="the next trigger handed over")


def test_a_trigger_the_broker_refuses_is_left_to_the_relay_and_handed_over_later(
    start_listener, settings, tmp_path: Path
) -> None:
    from config.celery import app

    assert app.conf.broker_url  # the workers' app (the relay's) reads the suite's broker before the override
    settings.OUTBOX_RELAY_GRACE = 0
    suite_broker = settings.CELERY_BROKER_URL
    settings.CELERY_BROKER_URL = dead_broker_url(tmp_path)
    start_listener()

    trigger = make_trigger()

    wait_until(publisher.publisher_suppressed, timeout=30, what="the publish to fail")
    trigger.refresh_from_db()
    # Given back: no hand-over time, so the relay does not count it among the queued.
    assert trigger.handed_over_at is None and trigger.dispatched_at is None and trigger.publish_count == 0
    # The broker is back: the relay (beat, every few seconds) hands it over.
    settings.CELERY_BROKER_URL = suite_broker
    assert outbox_relay() == 1
    assert broker_queued_trigger_ids(suite_broker) == [trigger.pk]


def test_stopping_a_listener_returns_while_it_waits_to_reconnect(fresh_publisher: None) -> None:
    listener = TriggerListener(dsn=f"postgres://root@127.0.0.1:{free_port()}/nowhere", reconnect_delay_first=60)
    listener.start()

    assert listener.stop(timeout=10)


def test_a_listener_needs_a_positive_batch() -> None:
    with pytest.raises(ValueError, match="batch_max"):
        TriggerListener(dsn=current_database_url(), batch_max=0)
