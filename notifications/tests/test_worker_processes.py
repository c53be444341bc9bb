"""The paths that matter, with real processes: a Celery worker on the real broker, a broker
that is really down, a worker really killed, two relays really racing."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from django.utils import timezone
from rest_framework.test import APIClient

from checkout.tests.factories import VALID_CHECKOUT
from harness.processes import (
    PYTHON,
    ManagedProcess,
    RedisServer,
    broker_purge,
    wait_until,
)
from notifications import publisher
from notifications.models import DeliveryAttempt, Notification, NotificationTrigger, Vendor
from notifications.sweeper import notifications_sweep
from notifications.tests.factories import make_trigger
from sandbox.testing import SandboxHandle

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def wait_for_inbox(sandbox: SandboxHandle, names: tuple[str, ...], count: int, timeout: float = 30) -> None:
    wait_until(
        lambda: sum(len(sandbox.control.messages(name)) for name in names) >= count,
        timeout=timeout,
        what=f"{count} messages in {names}",
    )


def test_a_checkout_is_delivered_by_a_real_worker(api: APIClient, start_worker, sandbox: SandboxHandle) -> None:
    start_worker()

    response = api.post("/api/v1/checkouts/", VALID_CHECKOUT, format="json")

    assert response.status_code == 201
    wait_for_inbox(sandbox, ("smtp-primary",), 1)
    wait_for_inbox(sandbox, ("sms-primary",), 1)
    order_id = response.json()["id"]
    wait_until(
        lambda: {n["status"] for n in api.get(f"/api/v1/checkouts/{order_id}/").json()["notifications"]} == {"sent"},
        timeout=10,
        what="notifications sent",
    )
    detail = api.get(f"/api/v1/checkouts/{order_id}/").json()
    assert sorted((n["channel"], n["vendor"], n["attempts"]) for n in detail["notifications"]) == [
        ("email", "smtp-primary", 1),
        ("sms", "sms-primary", 1),
    ]


def test_a_worker_killed_mid_send_leaves_the_notification_sent_exactly_once(
    start_worker, sandbox: SandboxHandle
) -> None:
    Vendor.objects.filter(channel="sms").update(timeout_seconds=5)
    sandbox.control.set_faults("sms-primary", latency_ms=4000)
    worker = start_worker()
    trigger = make_trigger()  # committed: its dispatch goes to the worker, which sends the email, then the SMS
    wait_until(
        lambda: DeliveryAttempt.objects.filter(notification__channel="sms", outcome="").exists(),
        timeout=20,
        what="an sms attempt in flight",
    )
    # The email goes out meanwhile; once it has, the SMS is the only notification the sweeper
    # can find (on a slow machine the kill could otherwise come first, and the sweep below
    # would re-queue the email and return before the SMS's lease ran out).
    wait_for_inbox(sandbox, ("smtp-primary",), 1)

    worker.kill()  # SIGKILL mid-call: no result, no acknowledgement
    sandbox.control.clear_faults("sms-primary")
    start_worker()
    notification = Notification.objects.get(trigger=trigger, channel="sms")
    assert notification.status == "sending"
    # The sweeper finds it once its lease runs out (beat runs it every few seconds).
    wait_until(lambda: notifications_sweep(stale_seconds=0) > 0, timeout=30, what="sweeper to re-queue it")
    wait_until(
        lambda: Notification.objects.get(pk=notification.pk).status == "sent", timeout=30, what="the resend"
    )

    delivered = sandbox.control.messages("sms-primary") + sandbox.control.messages("sms-fallback")
    assert len(delivered) == 1
    notification.refresh_from_db()
    assert notification.vendor.name == "sms-primary"
    # The killed call never delivered (the sandbox was still waiting to read it), and Twilio's
    # list said so; but a list cannot rule out a message still on its way, so the flag stays.
    assert notification.possible_duplicate is True
    outcomes = list(DeliveryAttempt.objects.filter(notification=notification).values_list("outcome", flat=True))
    assert outcomes == ["timeout", "sent"]  # the lost call is recorded as an unknown outcome


def test_an_sms_twilio_stored_before_its_worker_was_killed_is_found_there_and_not_sent_again(
    start_worker, sandbox: SandboxHandle
) -> None:
    Vendor.objects.filter(channel="sms").update(timeout_seconds=5)
    # Twilio stores the message at once; its answer would come after 4 s, but the worker dies first.
    sandbox.control.set_faults("sms-primary", answer_delay_ms=4000)
    worker = start_worker()
    trigger = make_trigger()
    wait_for_inbox(sandbox, ("smtp-primary",), 1)
    wait_for_inbox(sandbox, ("sms-primary",), 1)

    worker.kill()
    sandbox.control.clear_faults("sms-primary")
    start_worker()
    notification = Notification.objects.get(trigger=trigger, channel="sms")
    wait_until(lambda: notifications_sweep(stale_seconds=0) > 0, timeout=30, what="sweeper to re-queue it")
    wait_until(lambda: Notification.objects.get(pk=notification.pk).status == "sent", timeout=30, what="the lookup")

    [held] = sandbox.control.messages("sms-primary")
    assert sandbox.control.messages("sms-fallback") == []
    notification.refresh_from_db()
    assert (notification.vendor.name, notification.vendor_message_id) == ("sms-primary", held["sid"])
    assert notification.possible_duplicate is False
    assert list(DeliveryAttempt.objects.filter(notification=notification).values_list("outcome", flat=True)) == ["sent"]


def test_a_checkout_during_a_broker_outage_answers_201_and_the_relay_hands_it_over_later(
    api: APIClient, start_worker, worker_env: dict[str, str], sandbox: SandboxHandle, settings, tmp_path: Path
) -> None:
    # The web's own hand-off (the notify hand-off's broker outage: test_trigger_listener.py).
    settings.TRIGGER_HANDOFF_VIA, settings.TRIGGER_HANDOFF = "web", "notifications.outbox.trigger_handoff"
    worker_env["TRIGGER_HANDOFF_VIA"] = "web"  # no listener: the relay alone hands it over
    settings.OUTBOX_RELAY_GRACE = 0
    from config.celery import app

    assert app.conf.broker_url  # load the workers' Celery config now, before the override below
    broker = RedisServer(log_dir=tmp_path).start()
    broker.stop()  # the broker is really down: nothing listens on its port
    suite_broker = settings.CELERY_BROKER_URL
    settings.CELERY_BROKER_URL = broker.url()
    publisher._publisher_app.cache_clear()
    publisher.publisher_reset()
    try:
        started = time.perf_counter()
        response = api.post("/api/v1/checkouts/", VALID_CHECKOUT, format="json")
        elapsed = time.perf_counter() - started
    finally:
        settings.CELERY_BROKER_URL = suite_broker
        publisher._publisher_app.cache_clear()
        publisher.publisher_reset()

    assert response.status_code == 201
    print(f"checkout with the broker down answered in {elapsed * 1000:.1f} ms")
    trigger = NotificationTrigger.objects.get()
    assert trigger.dispatched_at is None

    # The broker is back (the suite's own); the relay finds the trigger and a worker sends it.
    start_worker()
    from notifications.outbox import outbox_relay

    assert outbox_relay() == 1
    wait_for_inbox(sandbox, ("smtp-primary",), 1)
    wait_for_inbox(sandbox, ("sms-primary",), 1)
    trigger.refresh_from_db()
    assert trigger.dispatched_at is not None


def test_two_relays_running_at_once_hand_each_trigger_over_once(worker_env: dict[str, str], settings, tmp_path: Path) -> None:
    broker_purge(settings.CELERY_BROKER_URL)
    # Rows as a checkout leaves them when its own hand-off failed: due for the relay.
    triggers = NotificationTrigger.objects.bulk_create(
        NotificationTrigger(event_type="order_confirmed", recipients={"sms": "+447911123456"}, relay_after=timezone.now())
        for _ in range(300)
    )

    relays = [
        ManagedProcess(f"relay-{n}", [PYTHON, "manage.py", "outbox_relay", "--once", "--batch-size", "40"],
                       env=worker_env, log_dir=tmp_path)
        for n in range(2)
    ]
    # Small batches and several passes each, so the two really interleave.
    for _ in range(5):
        for relay in relays:
            relay.start()
        for relay in relays:
            relay.process.wait(timeout=60)

    published = Counter(_queued_trigger_ids(settings.CELERY_BROKER_URL))
    assert set(published) == {t.pk for t in triggers}
    assert max(published.values()) == 1
    assert NotificationTrigger.objects.filter(publish_count=1).count() == 300


def _queued_trigger_ids(broker_url: str) -> list[int]:
    client = redis.Redis.from_url(broker_url)
    ids = []
    for raw in client.lrange("default", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] != "notifications.tasks.trigger_dispatch":
            continue
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.append(args[0])
    return ids
