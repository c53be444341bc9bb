"""Sentry, for real: a Celery worker with SENTRY_DSN pointing at a local HTTP server that
receives the SDK's envelopes over HTTP. An exception in a send task arrives there, with its
environment and release, and without a full email address or phone number anywhere."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from django.db import transaction

from config.tests.sentry_sink import EnvelopeSink, strings_in
from harness.database import current_database_url
from harness.processes import ManagedProcess, RedisServer, celery_worker, stack_env, wait_until
from notifications.demo import demo_templates_install
from notifications.models import Notification, Vendor
from notifications.services import trigger_publish

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EMAIL, PHONE = "ana.souza@example.com", "+447911123456"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    """A private broker: no other test run's worker takes these tasks, none of theirs reach this worker."""
    server = RedisServer(log_dir=tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def worker_with_sentry(settings, broker: RedisServer, sentry_sink: EnvelopeSink, tmp_path: Path) -> Iterator[ManagedProcess]:
    env = stack_env(
        database_url=current_database_url(),
        redis_url=settings.REDIS_URL,
        broker_url=broker.url(),
        CACHE_KEY_PREFIX=f"beacon-sentry-{uuid.uuid4().hex[:8]}",
        SECRET_KEY=settings.SECRET_KEY,
        SENTRY_DSN=sentry_sink.dsn,
        SENTRY_ENVIRONMENT="beacon-test",
        SENTRY_RELEASE="beacon@test-1",
        SENTRY_TRACES_SAMPLE_RATE="0",
        WORKER_METRICS_PORT="0",
    )
    worker = celery_worker(env, name="sentry-worker", concurrency=2, log_dir=tmp_path).start()
    try:
        wait_until(lambda: "ready." in worker.log_path.read_text(), timeout=90, what=f"worker ({worker.log_path})")
        yield worker
    finally:
        worker.stop()


def test_an_exception_in_a_send_reaches_sentry_scrubbed(
    worker_with_sentry: ManagedProcess, sentry_sink: EnvelopeSink, broker: RedisServer
) -> None:
    # A vendor row whose adapter key is broken, and is an email address / a phone number: the
    # send task raises KeyError("unknown vendor adapter '...'") with personal data in its value,
    # and its frames' local variables hold the recipient too.
    demo_templates_install()
    Vendor.objects.create(name="broken-email", channel="email", adapter=EMAIL, priority=1)
    Vendor.objects.create(name="broken-sms", channel="sms", adapter=PHONE, priority=1)
    with transaction.atomic():
        trigger = trigger_publish(
            event_type="order_confirmed",
            locale="en",
            payload={"order_ref": "AB12CD34", "customer_name": "Ana", "currency": "EUR", "total": "47.30",
                     "payment_error": "", "lines": []},
            recipients={"email": EMAIL, "sms": PHONE},
            subject_ref=f"order:{uuid.uuid4()}",
        )
    # The worker's broker is private: hand the trigger over there (the test's own hand-off
    # went to the suite's broker, where no worker of this test listens).
    publisher = Celery("sentry-test-publisher", broker=broker.url(), set_as_current=False)
    publisher.conf.broker_write_url = broker.url()  # CELERY_BROKER_URL in the environment would win otherwise
    publisher.send_task("notifications.tasks.trigger_dispatch", args=[trigger.pk], queue="default")

    def key_errors() -> list[dict[str, Any]]:
        return [
            event for event in sentry_sink.events()
            if any(value.get("type") == "KeyError" for value in event.get("exception", {}).get("values", []))
        ]

    wait_until(lambda: len(key_errors()) >= 2, timeout=60, what=f"two KeyError events ({worker_with_sentry.log_path})")
    assert Notification.objects.count() == 2
    # Raised by the task (Celery integration) or logged with its traceback inside it (logging
    # integration): either way the event is tagged with the task that hit it. The first attempt
    # runs in the dispatch (the worker's listener heard the trigger commit and ran it in its own
    # thread, tagged as the task; or the task published above), which fails at the email and
    # hands both sends to their queues, where the send tasks fail the same way.
    tasks = {event["extra"]["celery-job"]["task_name"] for event in key_errors()}
    assert "notifications.tasks.trigger_dispatch" in tasks
    assert tasks <= {
        "notifications.tasks.trigger_dispatch",
        "notifications.tasks.notification_send_email",
        "notifications.tasks.notification_send_sms",
    }
    for event in key_errors():
        assert event["environment"] == "beacon-test"
        assert event["release"] == "beacon@test-1"
        assert {"celery", "django", "redis"} <= set(event["sdk"]["integrations"])
        [exception] = event["exception"]["values"]
        assert "unknown vendor adapter" in exception["value"]
        texts = list(strings_in(event))
        assert not [text for text in texts if EMAIL in text or PHONE in text or "7911123456" in text]
        # What arrived is the scrubbed value, not nothing.
        assert "a•••@example.com" in exception["value"] or "+447••••••456" in exception["value"]
    # And nothing personal went over the wire at all, in any envelope (sessions, client reports...).
    raw = b"".join(sentry_sink.envelopes)
    assert EMAIL.encode() not in raw and PHONE.encode() not in raw
