"""The notify hand-off: a trigger's commit notifies PostgreSQL, a listener in the workers claims
and publishes it (notifications/trigger_listener.py). Real PostgreSQL sessions, a real Redis
broker, a real worker where the whole path matters."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection, transaction
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from checkout.tests.factories import VALID_CHECKOUT
from harness.database import current_database_url
from harness.processes import RedisServer, broker_purge, broker_queued_trigger_ids, free_port, wait_until
from notifications import publisher, trigger_listener
from notifications.models import NotificationTrigger
from notifications.outbox import outbox_relay
from notifications.statements import TRIGGER_CHANNEL, trigger_from_listener_row
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


def worker_handovers(port: int) -> dict[str, float]:
    """The worker's listener hand-overs by result (those above 0), from its /metrics (main process)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {sample.labels["result"]: sample.value for family in text_string_to_metric_families(text)
            if family.name == "beacon_trigger_listener_handovers" for sample in family.samples
            if sample.name.endswith("_total") and sample.value}


def test_a_committed_checkout_is_dispatched_through_the_workers_listener_without_the_web_publishing(
    api: APIClient, start_worker, worker_env: dict, sandbox: SandboxHandle, settings, tmp_path: Path,
    fresh_publisher: None
) -> None:
    worker_env["WORKER_METRICS_PORT"] = str(metrics_port := free_port())
    worker_env["TRIGGER_LISTENER_DISPATCH_THREADS"] = "8"  # the default, whatever this shell exports
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
    # A worker of the threads pool: its listener dispatched the trigger itself, published nothing.
    assert worker_handovers(metrics_port) == {"dispatched_here": 1.0}
    worker.stop(timeout=20)
    assert worker.process.returncode == 0  # its listener let it shut down by itself


def test_a_prefork_workers_listener_publishes_the_dispatch_for_its_pool(
    api: APIClient, start_worker, worker_env: dict, sandbox: SandboxHandle
) -> None:
    worker_env["WORKER_METRICS_PORT"] = str(metrics_port := free_port())
    start_worker(pool="prefork", concurrency=1)

    response = api.post("/api/v1/checkouts/", VALID_CHECKOUT, format="json")

    assert response.status_code == 201
    wait_until(lambda: len(sandbox.control.messages("sms-primary")) == 1, timeout=30, what="the SMS")
    # The main process only consumes: the dispatch went through the broker to a child process.
    assert worker_handovers(metrics_port) == {"published": 1.0}


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


# --- dispatching here: a worker of the threads pool (notifications/trigger_dispatch_threads.py) ---
def test_a_listener_with_idle_threads_delivers_a_trigger_itself_and_publishes_nothing(
    start_listener, settings, sandbox: SandboxHandle, vendors: dict, templates: None
) -> None:
    start_listener(dispatch_threads=2)

    trigger = make_trigger()

    wait_until(lambda: len(sandbox.control.messages("smtp-primary")) == 1, timeout=30, what="the email")
    wait_until(lambda: len(sandbox.control.messages("sms-primary")) == 1, timeout=30, what="the SMS")
    trigger.refresh_from_db()
    assert trigger.dispatched_at is not None and trigger.handed_over_at is not None
    assert trigger.publish_count == 0
    assert broker_queued_trigger_ids(settings.CELERY_BROKER_URL) == []
    assert set(trigger.notifications.values_list("status", flat=True)) == {"sent"}


def test_a_listener_hands_its_threads_the_row_its_claim_returned_and_a_large_one_without_it(
    start_listener, monkeypatch
) -> None:
    """A dispatch here starts from the claimed row (one SELECT less per checkout), unless the
    row is over WHOLE_ROW_MAX_BYTES: the listener's memory is bounded, that dispatch reads it."""
    given: dict[int, NotificationTrigger | None] = {}

    def recording_dispatch(*, trigger_id: int, claimed: NotificationTrigger | None) -> None:
        given[trigger_id] = claimed

    listener = start_listener(dispatch_threads=2)
    listener.dispatch_here._trigger_dispatch = recording_dispatch
    small = make_trigger()
    wait_until(lambda: small.pk in given, timeout=15, what="the first dispatch here")
    large_payload_bytes = len(json.dumps(small.payload)) + len(json.dumps(small.recipients))
    monkeypatch.setattr(trigger_listener, "WHOLE_ROW_MAX_BYTES", large_payload_bytes - 1)
    large = make_trigger()
    wait_until(lambda: large.pk in given, timeout=15, what="the second dispatch here")

    row = given[small.pk]
    stored = NotificationTrigger.objects.get(pk=small.pk)
    assert (row.pk, row.payload, row.recipients, row.locale, row.request_id) == (
        small.pk, small.payload, small.recipients, small.locale, small.request_id)
    assert row.handed_over_at == stored.handed_over_at is not None  # the row as claimed
    assert given[large.pk] is None


def test_a_listener_dispatches_a_trigger_over_the_whole_row_bound_by_reading_it(
    start_listener, monkeypatch, settings, sandbox: SandboxHandle, vendors: dict, templates: None
) -> None:
    monkeypatch.setattr(trigger_listener, "WHOLE_ROW_MAX_BYTES", 0)
    start_listener(dispatch_threads=2)

    trigger = make_trigger()

    wait_until(lambda: len(sandbox.control.messages("sms-primary")) == 1, timeout=30, what="the SMS")
    wait_until(lambda: len(sandbox.control.messages("smtp-primary")) == 1, timeout=30, what="the email")
    assert set(trigger.notifications.values_list("status", flat=True)) == {"sent"}
    assert broker_queued_trigger_ids(settings.CELERY_BROKER_URL) == []


def test_a_listener_whose_threads_are_all_busy_publishes_the_next_trigger(
    start_listener, settings, monkeypatch, sandbox: SandboxHandle, vendors: dict, templates: None
) -> None:
    for instance in ("smtp-primary", "sms-primary"):
        sandbox.control.set_faults(instance, latency_ms=600)  # below the vendors' 1 s timeout
    rows_loaded: list[int] = []

    def row_loaded(row: tuple) -> NotificationTrigger:
        rows_loaded.append(row[0])
        return trigger_from_listener_row(row)

    monkeypatch.setattr(trigger_listener, "trigger_from_listener_row", row_loaded)
    start_listener(dispatch_threads=1)

    busy = make_trigger()
    wait_until(lambda: NotificationTrigger.objects.filter(pk=busy.pk, handed_over_at__isnull=False).exists(), timeout=15,
               interval=0.02, what="the first trigger claimed")
    published = make_trigger()  # the one thread is in its vendor calls (1.2 s)

    wait_until(lambda: broker_queued_trigger_ids(settings.CELERY_BROKER_URL) == [published.pk], timeout=15,
               what="the second trigger published")
    wait_until(lambda: NotificationTrigger.objects.filter(pk=busy.pk, dispatched_at__isnull=False).exists(), timeout=15,
               what="the first dispatched here")
    wait_until(lambda: len(sandbox.control.messages("sms-primary")) == 1, timeout=30, what="the first trigger's SMS")
    assert broker_queued_trigger_ids(settings.CELERY_BROKER_URL) == [published.pk]
    assert NotificationTrigger.objects.get(pk=published.pk).dispatched_at is None  # no worker consumes here
    assert rows_loaded == [busy.pk]  # claimed with no thread idle: published by id, its row not loaded


def handovers(result: str) -> float:
    """This process's listener hand-overs with `result` so far."""
    return REGISTRY.get_sample_value("beacon_trigger_listener_handovers_total", {"result": result}) or 0.0


def test_while_the_broker_refuses_listeners_claim_only_what_their_idle_threads_dispatch(
    start_listener, settings, tmp_path: Path, sandbox: SandboxHandle, vendors: dict, templates: None
) -> None:
    settings.CELERY_BROKER_URL = dead_broker_url(tmp_path)
    settings.BEACON_PUBLISH_COOLDOWN = 120  # the whole test inside the refusal's cool-down
    assert publisher.tasks_publish_bounded("notifications.tasks.trigger_dispatch", calls=[([0], {})]) == 0
    assert publisher.publisher_suppressed()
    for instance in ("smtp-primary", "sms-primary"):
        sandbox.control.set_faults(instance, latency_ms=300)  # the threads stay busy a while
    before = {result: handovers(result) for result in ("dispatched_here", "published", "left_to_relay")}
    start_listener(dispatch_threads=2)
    start_listener(dispatch_threads=2)  # both hear every trigger: each claims others than the other

    with transaction.atomic():  # one commit: the five notifications arrive together
        triggers = [make_trigger() for _ in range(5)]

    wait_until(lambda: len(sandbox.control.messages("sms-primary")) == 4, timeout=30, what="four triggers' SMS")
    dispatched = NotificationTrigger.objects.filter(pk__in=[t.pk for t in triggers], dispatched_at__isnull=False)
    unclaimed = NotificationTrigger.objects.filter(pk__in=[t.pk for t in triggers], handed_over_at__isnull=True,
                                                   dispatched_at__isnull=True)
    assert dispatched.count() == 4 and unclaimed.count() == 1  # the relay's, after its grace
    assert handovers("dispatched_here") == before["dispatched_here"] + 4
    # Claimed only what was dispatched here: nothing was tried on the broker, nothing given back.
    assert handovers("published") == before["published"]
    assert handovers("left_to_relay") == before["left_to_relay"]


def test_celery_inspect_lists_the_dispatches_running_in_a_workers_listener_threads(
    api: APIClient, start_worker, sandbox: SandboxHandle
) -> None:
    from config.celery import app

    for instance in ("smtp-primary", "sms-primary"):
        sandbox.control.set_faults(instance, latency_ms=700)  # the dispatch stays in its vendor calls
    start_worker()

    def running() -> list[int]:
        replies = app.control.inspect(timeout=1.0)._request("dispatches_here") or {}
        return [reply["running"] for reply in replies.values()]

    assert running() == [0]
    assert api.post("/api/v1/checkouts/", VALID_CHECKOUT, format="json").status_code == 201
    wait_until(lambda: running() == [1], timeout=15, interval=0.05, what="the dispatch listed as running")
    wait_until(lambda: len(sandbox.control.messages("sms-primary")) == 1, timeout=30, what="the SMS")
    wait_until(lambda: running() == [0], timeout=15, what="the dispatch finished")
