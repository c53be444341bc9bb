"""Celery signal handlers: the request id across task hops, task metrics, the worker exporter.

Imported by config/celery.py, so they are connected in every process that loads the app:
the web (publishing), the worker's main process and its pool processes.

Request id: the publisher puts the current request id in the message headers
(`before_task_publish`); Celery 5 exposes a custom header as an attribute of
`task.request`, and `task_prerun` makes it the current request id for the run, so the
task's log lines, the tasks it queues and its vendor calls (X-Request-ID) carry it too.
"""

from __future__ import annotations

import os
import threading
import time
from contextvars import Token
from typing import Any

from celery import signals
from django.db import close_old_connections
from prometheus_client import Counter, Histogram

from config.gc_tuning import startup_objects_freeze
from config.metrics_export import process_mark_dead, worker_metrics_serve
from foundation.request_context import request_id_get, request_id_var

REQUEST_ID_HEADER = "request_id"

TASK_RUNS = Counter(
    "beacon_celery_task_runs_total",
    "Celery task runs finished, by task and final state (SUCCESS, RETRY, FAILURE, ...).",
    ["task", "state"],
)
TASK_RETRIES = Counter("beacon_celery_task_retries_total", "Celery task retries requested, by task.", ["task"])
TASK_FAILURES = Counter(
    "beacon_celery_task_failures_total", "Celery task runs that raised, by task and exception type.", ["task", "exception"]
)
TASK_SECONDS = Histogram(
    "beacon_celery_task_duration_seconds",
    "Duration of Celery task runs, by task.",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)

# task id -> (context token, start time) of the runs in progress in this process (threads pool: several).
_runs: dict[str, tuple[Token[str], float]] = {}
_runs_lock = threading.Lock()


@signals.before_task_publish.connect
def request_id_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Carry the current request id in the message, unless the caller set one."""
    current = request_id_get()
    if headers is not None and current != "-":
        headers.setdefault(REQUEST_ID_HEADER, current)


def task_request_id(task: Any) -> str:
    """The request id a task message carries ("-" when none)."""
    request = task.request
    value = getattr(request, REQUEST_ID_HEADER, None) or (getattr(request, "headers", None) or {}).get(REQUEST_ID_HEADER)
    return str(value) if value else "-"


@signals.task_prerun.connect
@signals.task_postrun.connect
def task_db_connections_recycle(task: Any = None, **_: Any) -> None:
    """Around each task, what Django does around each request: drop this thread's database
    connection if it is broken or older than CONN_MAX_AGE, keep it otherwise.

    Celery's own per-task close is off (CELERY_DB_REUSE_MAX): reconnecting for every task
    forked a PostgreSQL backend per task. Eager runs share the caller's transaction: untouched.
    """
    if task is not None and getattr(task.request, "is_eager", False):
        return
    close_old_connections()


@signals.task_prerun.connect
def task_run_started(task_id: str = "", task: Any = None, **_: Any) -> None:
    token = request_id_var.set(task_request_id(task) if task is not None else "-")
    with _runs_lock:
        _runs[task_id] = (token, time.perf_counter())


@signals.task_postrun.connect
def task_run_finished(task_id: str = "", task: Any = None, state: str | None = None, **_: Any) -> None:
    with _runs_lock:
        run = _runs.pop(task_id, None)
    name = getattr(task, "name", "unknown")
    TASK_RUNS.labels(task=name, state=state or "UNKNOWN").inc()
    if run is not None:
        token, started = run
        TASK_SECONDS.labels(task=name).observe(time.perf_counter() - started)
        try:
            request_id_var.reset(token)
        except ValueError:  # set in another context (never expected); just clear it
            request_id_var.set("-")


@signals.task_retry.connect
def task_retried(sender: Any = None, **_: Any) -> None:
    TASK_RETRIES.labels(task=getattr(sender, "name", "unknown")).inc()


@signals.task_failure.connect
def task_failed(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    TASK_FAILURES.labels(task=getattr(sender, "name", "unknown"), exception=type(exception).__name__).inc()


@signals.worker_ready.connect
def worker_exporter_start(**_: Any) -> None:
    """The worker's /metrics, in the main process, once the pool has started (its children
    then do not inherit the listening socket); then its start-up objects are frozen out of
    garbage collection (config/gc_tuning.py: the threads pool runs every task here)."""
    worker_metrics_serve()
    startup_objects_freeze()


@signals.worker_process_init.connect
def worker_child_freeze(**_: Any) -> None:
    """A prefork pool process: the same freeze, in each child once it is set up."""
    startup_objects_freeze()


@signals.worker_process_shutdown.connect
def worker_process_gone(pid: int | None = None, **_: Any) -> None:
    process_mark_dead(pid or os.getpid())


@signals.worker_ready.connect
def worker_trigger_listener_started(sender: Any = None, **_: Any) -> None:
    """The notify hand-off's listener (notifications/trigger_listener.py), in the worker's main
    process: one per worker, whatever its pool. With the threads pool (tasks run in this
    process) it also dispatches what its own threads can take."""
    from notifications.trigger_listener import worker_trigger_listener_start

    worker_trigger_listener_start(tasks_run_in_threads_here=worker_pool_is_threads(sender))


def worker_pool_is_threads(consumer: Any) -> bool:
    """Whether the worker's tasks run as threads of this process (`--pool threads`)."""
    return type(getattr(consumer, "pool", None)).__module__ == "celery.concurrency.thread"


@signals.worker_shutting_down.connect
def worker_trigger_listener_stopping(**_: Any) -> None:
    """Stop listening as soon as the worker starts shutting down (sent from its signal
    handler: only asks, does not wait)."""
    from notifications.trigger_listener import worker_trigger_listener_stop

    worker_trigger_listener_stop(wait=False)


@signals.worker_shutdown.connect
def worker_trigger_listener_stopped(**_: Any) -> None:
    """Before the worker exits: wait a bounded time for the listener to finish."""
    from notifications.trigger_listener import worker_trigger_listener_stop

    worker_trigger_listener_stop(wait=True)
