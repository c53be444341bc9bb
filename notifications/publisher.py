"""The one room that talks to the broker: every task Beacon queues is published here.

- The hand-off (`task_publish_bounded` from the web with TRIGGER_HANDOFF_VIA=web,
  `tasks_publish_bounded` from the workers' trigger listener): bounded in time, never raises.
- From workers and beat (`task_publish`, `notification_enqueue`): through the worker's own
  Celery app; the database keeps every state, so a refused publish is found again by the
  outbox relay or the sweeper.

Bounded publishing of tasks from the web process:

Kombu retries a lost broker connection forever by default, so a bare `.delay()` can hang a
checkout while Redis is down (celery#4296). The web publishes through its own Celery app whose
broker connection has tight socket timeouts and at most one reconnect, and after a failure it
stops trying for a cool-down period: a broker outage costs one request at most about
BEACON_PUBLISH_TIMEOUT per cool-down window, and the outbox relay hands over what was skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cache
from typing import Any

from celery import Celery
from django.conf import settings

from notifications.models import Channel

logger = logging.getLogger(__name__)

SEND_TASKS = {
    Channel.EMAIL: "notifications.tasks.notification_send_email",
    Channel.SMS: "notifications.tasks.notification_send_sms",
}

_lock = threading.Lock()
_suppressed_until = 0.0


@cache
def _publisher_app(timeout: float) -> Celery:
    """A Celery app whose broker connection gives up after `timeout` seconds (one per timeout)."""
    # Not the current app: shared tasks in this process must keep using the real one.
    app = Celery("beacon-publisher", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.broker_transport_options = {
        **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        # py-amqp (RabbitMQ): every frame, the publisher confirm's wait included.
        "read_timeout": timeout,
        "write_timeout": timeout,
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0,
    }
    app.conf.broker_connection_timeout = timeout
    # Celery prefers the CELERY_BROKER_URL environment variable over configuration for
    # broker_url; the write URL is taken from configuration, so settings stay the truth.
    app.conf.broker_write_url = settings.CELERY_BROKER_URL
    app.conf.broker_connection_max_retries = 1
    return app


def task_publish_bounded(task_name: str, *, args: list[Any], headers: dict[str, Any] | None = None) -> bool:
    """Publish `task_name(*args)` if the broker answers quickly; True when it was published.

    Never raises and never blocks for long; False means "left for the relay".
    """
    global _suppressed_until
    if time.monotonic() < _suppressed_until:
        return False
    try:
        _publisher_app(settings.BEACON_PUBLISH_TIMEOUT).send_task(
            task_name,
            args=args,
            headers=headers or {},
            # Celery would build these with its `saferepr` on every publish (about a tenth of
            # the publish's CPU); the arguments here are ids, whose plain repr is the same.
            argsrepr=repr(args),
            kwargsrepr="{}",
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0, "interval_max": 0},
        )
        return True
    except Exception as exc:
        with _lock:
            _suppressed_until = time.monotonic() + settings.BEACON_PUBLISH_COOLDOWN
        logger.warning(
            "broker publish failed (%s); leaving work to the outbox relay for %.0fs",
            type(exc).__name__,
            settings.BEACON_PUBLISH_COOLDOWN,
        )
        return False


def tasks_publish_bounded(task_name: str, *, calls: list[tuple[list[Any], dict[str, Any]]]) -> int:
    """Publish `task_name(*args)` with `headers` for each (args, headers) in `calls`, in order,
    over one producer connection, each bounded by TRIGGER_LISTENER_PUBLISH_TIMEOUT (a worker's
thread waits for no customer, so it allows the broker longer than the web). Stops at the
    first failure (then leaves work to the relay for the cool-down, as the web does); returns
    how many were published. Never raises. The workers' trigger listener publishes so: the
    workers' own app retries a lost broker connection without end, which a thread that must
    keep reading its notifications cannot afford."""
    global _suppressed_until
    if time.monotonic() < _suppressed_until:
        return 0
    app = _publisher_app(settings.TRIGGER_LISTENER_PUBLISH_TIMEOUT)
    published = 0
    try:
        with app.producer_or_acquire() as producer:
            for args, headers in calls:
                app.send_task(
                    task_name, args=args, headers=headers, producer=producer, argsrepr=repr(args), kwargsrepr="{}",
                    retry=True,
                    retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0, "interval_max": 0},
                )
                published += 1
    except Exception as exc:
        with _lock:
            _suppressed_until = time.monotonic() + settings.BEACON_PUBLISH_COOLDOWN
        logger.warning(
            "broker publish failed (%s) after %d of %d; leaving work to the outbox relay for %.0fs",
            type(exc).__name__, published, len(calls), settings.BEACON_PUBLISH_COOLDOWN,
        )
    return published


def publisher_suppressed() -> bool:
    """True while a recent publish failure keeps this process from trying the broker."""
    return time.monotonic() < _suppressed_until


def publisher_reset() -> None:
    """Forget a previous failure (tests, or after the broker is known to be back)."""
    global _suppressed_until
    _suppressed_until = 0.0


def task_publish(task_name: str, *, args: list[Any], countdown: float | None = None) -> None:
    """Publish `task_name(*args)` through the process's Celery app (workers, beat, admin).
    Raises what the broker raised: the caller decides what a refused publish means."""
    from config.celery import app

    app.send_task(task_name, args=args, countdown=countdown)


def queue_depth(queue: str) -> int | None:
    """How many messages wait in `queue` on the broker (not those workers have taken), or None
    if the broker did not answer. A queue the broker does not know holds nothing."""
    from config.celery import app

    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            try:
                return connection.default_channel.queue_declare(queue=queue, passive=True).message_count
            except connection.channel_errors:  # NOT_FOUND: never declared, or (Redis) empty
                return 0
    except Exception as exc:
        logger.warning("could not read the depth of queue %s: %s", queue, type(exc).__name__)
        return None


def notification_enqueue(*, notification_id: int, channel: str, countdown: float | None = None) -> bool:
    """Queue a send on the channel's queue. False if the broker refused: the sweeper will find it."""
    try:
        task_publish(SEND_TASKS[Channel(channel)], args=[notification_id], countdown=countdown)
        return True
    except Exception as exc:
        logger.warning("could not queue notification %s: %s", notification_id, type(exc).__name__)
        return False
