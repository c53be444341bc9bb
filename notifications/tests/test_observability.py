"""Observability with real processes: gunicorn and a Celery worker on the test database and
broker, started the way the Procfile starts them (deploy/with-metrics-dir, config/gunicorn.conf.py).

- One checkout's request id is followed from the HTTP response to the trigger and
  notification rows, the worker's JSON log lines and the SMTP message the vendor received.
- Scrapes of the web and of the worker (prefork, two processes) show every metric with the
  values the database says they must have, and pass `promtool check metrics`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from checkout.tests.factories import VALID_CHECKOUT
from harness.processes import BIN, ManagedProcess, RedisServer, free_port, stack_env, wait_until
from harness.testdb import current_database_url
from notifications.models import AttemptOutcome, DeliveryAttempt, Notification, NotificationStatus, NotificationTrigger
from sandbox.testing import SandboxHandle

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Generous: a cold start of gunicorn or a prefork worker on a busy 2-core machine.
START_TIMEOUT = 90
SETTLE_TIMEOUT = 90


@dataclass
class Stack:
    web: ManagedProcess
    worker: ManagedProcess
    web_url: str
    worker_metrics_url: str
    api_key: str
    broker_url: str

    def checkout(self, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        request = urllib.request.Request(
            f"{self.web_url}/api/v1/checkouts/",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read())

    def publish(self, task_name: str, args: list[Any], queue: str = "default") -> None:
        """Put a task on the stack's private broker, as another process of the stack would."""
        publisher = Celery("observability-test", broker=self.broker_url, set_as_current=False)
        publisher.conf.broker_write_url = self.broker_url  # CELERY_BROKER_URL in the environment would win
        publisher.send_task(task_name, args=args, queue=queue)

    def scrape_web(self) -> str:
        return _get(f"{self.web_url}/metrics")

    def scrape_worker(self) -> str:
        return _get(self.worker_metrics_url)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of a Prometheus text exposition."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def total(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when there is none)."""
    return sum(value for got, value in samples(text).get(name, []) if labels.items() <= got.items())


@pytest.fixture
def start_stack(
    settings, vendors: dict, templates: None, api_client_with_key: tuple, sandbox: SandboxHandle, tmp_path: Path
) -> Iterator[Callable[..., Stack]]:
    # A private broker: no other test run's worker takes these tasks, none of theirs reach this stack.
    broker = RedisServer(log_dir=tmp_path).start()
    started: list[ManagedProcess] = []

    def start(*, pool: str) -> Stack:
        web_port, metrics_port = free_port(), free_port()
        env = stack_env(
            database_url=current_database_url(),
            redis_url=settings.REDIS_URL,
            broker_url=broker.url(),
            # The hand-off's 50 ms budget is for production; a cold connection on a busy CI box may need more.
            BEACON_PUBLISH_TIMEOUT="2",
            CACHE_KEY_PREFIX=f"beacon-obs-{uuid.uuid4().hex[:8]}",
            SECRET_KEY=settings.SECRET_KEY,  # vendor secrets are encrypted with a key derived from it
            LOG_FORMAT="json",
            PROMETHEUS_MULTIPROC_ROOT=str(tmp_path / "metrics"),
            WORKER_METRICS_PORT=str(metrics_port),
            NOTIFICATION_RETRY_BASE_DELAY="0.2",
            NOTIFICATION_RETRY_MAX_DELAY="1",
        )
        web = ManagedProcess(
            "web",
            ["deploy/with-metrics-dir", "web", str(BIN / "gunicorn"), "-c", "config/gunicorn.conf.py",
             "config.wsgi:application", "--bind", f"127.0.0.1:{web_port}", "--workers", "2", "--threads", "2",
             "--worker-class", "gthread"],
            env=env,
            log_dir=tmp_path,
        ).start()
        started.append(web)
        worker = ManagedProcess(
            "worker",
            ["deploy/with-metrics-dir", "worker", str(BIN / "celery"), "-A", "config", "worker", "-Q",
             "default,email,sms", "--pool", pool, "--concurrency", "2", "--hostname", f"obs-{uuid.uuid4().hex[:8]}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"],
            env=env,
            log_dir=tmp_path,
        ).start()
        started.append(worker)
        stack = Stack(
            web=web,
            worker=worker,
            web_url=f"http://127.0.0.1:{web_port}",
            worker_metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
            api_key=api_client_with_key[1],
            broker_url=broker.url(),
        )
        wait_until(lambda: _get(f"{stack.web_url}/healthz") is not None, timeout=START_TIMEOUT,
                   what=f"gunicorn ({web.log_path})")
        # The exporter starts on worker_ready: once it answers, the worker consumes.
        wait_until(lambda: stack.scrape_worker() is not None, timeout=START_TIMEOUT, what=f"worker ({worker.log_path})")
        return stack

    yield start
    for process in reversed(started):
        process.stop()
    broker.stop()


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def all_sent(count: int) -> bool:
    notifications = Notification.objects.all()
    return notifications.count() == count and not notifications.exclude(status=NotificationStatus.SENT).exists()


def test_one_checkouts_request_id_can_be_followed_to_the_vendor_call(start_stack, sandbox: SandboxHandle) -> None:
    stack = start_stack(pool="threads")

    status, headers, body = stack.checkout(VALID_CHECKOUT)

    assert status == 201, body
    request_id = headers["X-Request-ID"]
    trigger = NotificationTrigger.objects.get(subject_ref=f"order:{body['id']}")
    assert trigger.request_id == request_id
    wait_until(lambda: all_sent(2), timeout=SETTLE_TIMEOUT, what="both notifications sent")
    notifications = list(Notification.objects.filter(trigger=trigger))
    assert {n.request_id for n in notifications} == {request_id}

    # The vendors received it; the SMS vendor's request carried the request id (an HTTP header),
    # the email did not: internal headers are not for recipients.
    [message] = sandbox.control.messages("smtp-primary")
    assert "X-Request-ID" not in [name for name, _ in message["headers"]]
    [sms_request] = sandbox.control.messages("sms-primary")
    assert sms_request["request_id"] == request_id

    # The web's one line for the checkout, with what support needs and nothing personal.
    web_lines = json_lines(stack.web.log_path)
    [checkout_line] = [line for line in web_lines if line["message"].startswith("checkout ")]
    assert checkout_line["request_id"] == request_id
    assert checkout_line["message"] == "checkout paid"
    assert checkout_line["order_id"] == body["id"]
    assert checkout_line["total"] == "47.30"
    assert checkout_line["client_id"]
    assert checkout_line["duration_ms"] >= 0

    # The worker's lines of that request: the task that dispatched it and one line per attempt.
    wait_until(
        lambda: len([line for line in json_lines(stack.worker.log_path)
                     if line.get("request_id") == request_id and line["message"].startswith("delivery attempt")]) == 2,
        timeout=30,
        what="the worker's delivery attempt lines",
    )
    attempts = [line for line in json_lines(stack.worker.log_path)
                if line.get("request_id") == request_id and line["message"].startswith("delivery attempt")]
    assert {line["vendor"] for line in attempts} == {"smtp-primary", "sms-primary"}
    assert {line["outcome"] for line in attempts} == {"sent"}
    assert {line["notification_id"] for line in attempts} == {n.pk for n in notifications}

    # Masked everywhere: no full email address or phone number in either process's output.
    for log in (stack.web.log_path, stack.worker.log_path):
        text = log.read_text(errors="replace")
        assert VALID_CHECKOUT["customer"]["email"] not in text
        assert VALID_CHECKOUT["customer"]["phone"] not in text


@pytest.mark.parametrize(("pool", "worker_processes"), [("threads", 1), ("prefork", 3)])
def test_every_web_and_worker_process_freezes_its_start_up_objects(start_stack, pool: str, worker_processes: int) -> None:
    """config/gc_tuning.py: each gunicorn worker and each Celery process (a prefork pool's
    children too) takes what start-up built out of garbage collection, once."""
    stack = start_stack(pool=pool)

    def frozen(log: Path) -> list[dict[str, Any]]:
        return [line for line in json_lines(log) if line["logger"] == "config.gc_tuning"]

    # Two gunicorn workers (--workers 2); the second may still be booting when /healthz answers.
    wait_until(lambda: len(frozen(stack.web.log_path)) == 2, timeout=30, what="the web's freezes")
    wait_until(lambda: len(frozen(stack.worker.log_path)) == worker_processes, timeout=30, what="the worker's freezes")
    web, worker = frozen(stack.web.log_path), frozen(stack.worker.log_path)
    assert (len(web), len(worker)) == (2, worker_processes)  # once per process
    for line in web + worker:
        # Django, DRF, Celery and Beacon's modules: far more than a bare interpreter's ~11,000.
        assert int(line["message"].split()[1]) > 60_000, line["message"]


def test_web_and_worker_scrapes_show_every_metric_and_pass_promtool(
    start_stack, sandbox: SandboxHandle
) -> None:
    stack = start_stack(pool="prefork")

    # 1. An SMS outage on both vendors makes the first checkout's SMS retry: its first round
    # fails in the dispatch task, the second in its own send task, which retries.
    for name in ("sms-primary", "sms-fallback"):
        sandbox.control.set_faults(name, outage=True)
    assert stack.checkout(VALID_CHECKOUT)[0] == 201
    wait_until(lambda: DeliveryAttempt.objects.filter(vendor__channel="sms", outcome=AttemptOutcome.TRANSIENT_ERROR).count() >= 4,
               timeout=SETTLE_TIMEOUT, what="two failed SMS rounds")
    for name in ("sms-primary", "sms-fallback"):
        sandbox.control.clear_faults(name)
    # 2. More checkouts: paid, declined, invalid.
    assert stack.checkout(VALID_CHECKOUT)[0] == 201
    assert stack.checkout({**VALID_CHECKOUT, "payment_token": "tok_declined"})[0] == 402
    assert stack.checkout({**VALID_CHECKOUT, "lines": []})[0] == 400
    # 3. A poison message: a task that raises.
    stack.publish("notifications.tasks.trigger_dispatch", ["not-an-id"])

    triggers = NotificationTrigger.objects.count()
    assert triggers == 3
    wait_until(lambda: NotificationTrigger.objects.filter(dispatched_at__isnull=True).count() == 0
               and all_sent(Notification.objects.count()), timeout=SETTLE_TIMEOUT, what="every notification sent")
    sent = Notification.objects.count()

    def worker_caught_up() -> bool:
        text = stack.scrape_worker()
        return (
            total(text, "beacon_notifications_total", status="sent") == sent
            and total(text, "beacon_celery_task_failures_total", task="notifications.tasks.trigger_dispatch") == 1
        )

    wait_until(worker_caught_up, timeout=30, what="the worker's counters")
    web, worker = stack.scrape_web(), stack.scrape_worker()

    # The web: checkouts, triggers, outbox, queues, django-prometheus.
    assert total(web, "beacon_checkouts_total", outcome="paid") == 2
    assert total(web, "beacon_checkouts_total", outcome="payment_failed") == 1
    assert total(web, "beacon_checkouts_total", outcome="invalid") == 1
    assert total(web, "beacon_checkout_duration_seconds_count") == 4
    assert total(web, "beacon_checkout_duration_seconds_bucket", le="+Inf") == 4
    assert total(web, "beacon_triggers_created_total") == triggers
    assert samples(web)["beacon_outbox_oldest_undispatched_age_seconds"] == [({}, 0.0)]
    assert total(web, "beacon_outbox_undispatched_triggers") == 0
    assert total(web, "beacon_notifications_dead") == 0
    assert {labels["queue"] for labels, _ in samples(web)["beacon_celery_queue_length"]} == {"default", "email", "sms"}
    assert total(web, "django_http_requests_total_by_view_transport_method_total", view="checkout:checkout-list") >= 4
    assert total(web, "django_db_execute_total") > 0

    # The worker: dispatch, delivery, retries, failures, vendors, cache, circuits — summed over its processes.
    trigger_task = "notifications.tasks.trigger_dispatch"
    assert total(worker, "beacon_triggers_dispatched_total") == triggers
    assert total(worker, "beacon_celery_task_runs_total", task=trigger_task, state="SUCCESS") == triggers
    assert total(worker, "beacon_celery_task_failures_total", task=trigger_task, exception="ValueError") == 1
    assert total(worker, "beacon_celery_task_retries_total", task="notifications.tasks.notification_send_sms") >= 1
    assert total(worker, "beacon_celery_task_runs_total", state="RETRY") >= 1
    # Three dispatches, the poison message, and at least two runs of the SMS's send task; the
    # emails went out in their dispatch tasks, so no email send task ran.
    assert total(worker, "beacon_celery_task_duration_seconds_count") >= triggers + 1 + 2
    assert total(worker, "beacon_celery_task_runs_total", task="notifications.tasks.notification_send_email") == 0
    assert total(worker, "beacon_notification_retries_total", channel="sms") >= 1
    assert total(worker, "beacon_delivery_attempts_total", outcome="sent") == sent
    assert total(worker, "beacon_delivery_attempts_total") > sent
    assert total(worker, "beacon_delivery_latency_seconds_count") == sent
    assert total(worker, "beacon_vendor_call_seconds_count", outcome="sent") == sent
    assert total(worker, "beacon_template_cache_requests_total") >= sent
    assert {labels["vendor"] for labels, _ in samples(worker)["beacon_circuit_state"]} >= {"sms-primary", "smtp-primary"}
    # Scrape-time gauges come from the web only, so no series is exported twice.
    assert "beacon_celery_queue_length" not in samples(worker)

    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("BEACON_REQUIRE_PROMTOOL"):
            pytest.fail("promtool is required (BEACON_REQUIRE_PROMTOOL is set) but not on PATH")
        return
    for name, text in (("web", web), ("worker", worker)):
        result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"promtool check metrics ({name}):\n{result.stdout}{result.stderr}"
