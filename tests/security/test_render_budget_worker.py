"""20.1, done when: hostile templates leave other checkouts' notifications delivered on time,
with a real Celery worker (threads pool, where Celery's time limits never apply) on the real
broker. Before the render budget, ten triggers of these templates held every thread of the
worker for minutes and grew it by gigabytes; ordinary checkouts waited behind them."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from checkout.tests.factories import checkout_body
from config.pytest_plugin import _broker_url_for_tests
from harness.processes import ManagedProcess, stack_env, wait_until
from harness.testdb import current_database_url
from notifications import publisher
from notifications.models import Notification, NotificationTemplate, NotificationTrigger
from notifications.outbox import outbox_relay
from notifications.tests.factories import make_trigger
from sandbox.testing import SandboxHandle

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NESTED_LOOPS = "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}"
HOSTILE_TRIGGERS = 10  # more than the worker's 8 threads: every thread meets one
ORDINARY_CHECKOUTS = 10
# Each ordinary notification is sent within this many seconds of its checkout. The case
# study's target is 1 s (p99) on a quiet stack; this one also renders ten hostile triggers
# (two budgets of 0.5 s each) on the same two cores.
ON_TIME_SECONDS = 5.0
# The worker process's peak resident memory (the attack grew one to 15.2 GB).
MAX_WORKER_PEAK_MB = 600


@pytest.fixture
def worker_env(settings, vendors: dict, templates: None) -> Iterator[dict[str, str]]:
    """The suite's broker for this process's hand-offs and for the worker, named explicitly: a
    task taken by another session's worker (the browser tests' private one) would be lost."""
    settings.CELERY_BROKER_URL = _broker_url_for_tests()
    publisher._publisher_app.cache_clear()
    publisher.publisher_reset()
    yield stack_env(
        database_url=current_database_url(),
        redis_url=settings.REDIS_URL,
        broker_url=settings.CELERY_BROKER_URL,
        CACHE_KEY_PREFIX=settings.CACHES["default"]["KEY_PREFIX"],
        SECRET_KEY=settings.SECRET_KEY,  # vendor secrets are encrypted with a key derived from it
    )
    publisher._publisher_app.cache_clear()


def hostile_templates_install() -> None:
    """The attack's templates for locale `de`, stored as they were before the save check."""
    NotificationTemplate.objects.create(
        event_type="order_confirmed", channel="email", locale="de",
        subject="{{ 'a' * 10**9 }}", body_text="{{ ('x' * 1000).join(range(100000)|map('string')) }}", body_html=NESTED_LOOPS,
    )
    NotificationTemplate.objects.create(event_type="order_confirmed", channel="sms", locale="de", body_text=NESTED_LOOPS)


def peak_memory_mb(process: ManagedProcess) -> float:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def test_hostile_templates_leave_other_checkouts_delivered_on_time(
    api: APIClient, start_worker, sandbox: SandboxHandle
) -> None:
    hostile_templates_install()
    worker = start_worker()

    hostile = [make_trigger(locale="de", name="Mallory").pk for _ in range(HOSTILE_TRIGGERS)]
    orders = []
    for number in range(ORDINARY_CHECKOUTS):
        response = api.post("/api/v1/checkouts/", checkout_body(), format="json", HTTP_IDEMPOTENCY_KEY=f"budget-{number}")
        assert response.status_code == 201
        orders.append(response.json()["id"])
        time.sleep(0.1)
    ordinary = list(NotificationTrigger.objects.filter(subject_ref__in=[f"order:{order}" for order in orders]).values_list("pk", flat=True))
    assert len(ordinary) == ORDINARY_CHECKOUTS
    everything = Notification.objects.filter(trigger__in=[*hostile, *ordinary])

    def settled() -> bool:
        statuses = Counter(everything.values_list("status", flat=True))
        return sum(statuses.values()) == 2 * (HOSTILE_TRIGGERS + ORDINARY_CHECKOUTS) and set(statuses) <= {"sent", "failed"}

    try:
        wait_until(settled, timeout=90, what="every notification sent or failed")
    except TimeoutError:
        print("statuses:", Counter(everything.values_list("trigger__locale", "status")), "worker log:", worker.log_tail(60))
        raise

    delivered = Notification.objects.filter(trigger__in=ordinary).select_related("trigger")
    delays = sorted((n.sent_at - n.trigger.created_at).total_seconds() for n in delivered)
    print(f"ordinary notifications: {len(delays)}, delay to sent: max {delays[-1]:.2f} s, median {delays[len(delays) // 2]:.2f} s")
    assert {n.status for n in delivered} == {"sent"}
    assert delays[-1] < ON_TIME_SECONDS
    assert len(sandbox.control.messages("smtp-primary")) == len(sandbox.control.messages("sms-primary")) == ORDINARY_CHECKOUTS

    failed = Notification.objects.filter(trigger__in=hostile)
    assert {n.status for n in failed} == {"failed"}
    assert all("exceeded the render budget" in n.last_error for n in failed)
    assert max(len(n.rendered_text) for n in failed) == 0  # no gigabyte stored
    # Every trigger dispatched the first time: nothing left for the relay to republish.
    assert not NotificationTrigger.objects.filter(dispatched_at__isnull=True).exists()
    assert outbox_relay() == 0
    assert set(NotificationTrigger.objects.values_list("publish_count", flat=True)) == {0}
    peak = peak_memory_mb(worker)
    print(f"worker peak resident memory: {peak:.0f} MB")
    assert peak < MAX_WORKER_PEAK_MB
