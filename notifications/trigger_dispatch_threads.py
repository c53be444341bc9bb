"""Dispatching a claimed trigger in the worker whose listener heard it, in threads of its own.

The notify hand-off's listener (trigger_listener.py) claims each committed trigger. It used to
publish every claim to the broker for a worker's Celery pool to consume again: about a quarter
of a worker's CPU went to that round trip (kombu publishing, Celery consuming and tracing the
task; py-spy, docs/performance.md). A worker whose tasks run as threads of its own process
(`--pool threads`, the Procfile's) now runs the dispatch of a claim here, in one of
TRIGGER_LISTENER_DISPATCH_THREADS threads, when one is idle. A claim that finds none idle is
published to the broker as before, where any worker's pool takes it.

Nothing waits in memory: a trigger is taken only by an idle thread, so it is dispatched at once
or published; a process that dies loses only the dispatches it was running. What keeps the
guarantees the broker path gave (docs/reliability.md, "The hand-off"):

- The claim is unchanged (one listener per trigger, `handed_over_at` set, `relay_after` at least
  OUTBOX_RELAY_GRACE ahead), and the dispatch is the Celery task's own idempotent service,
  `dispatch.trigger_dispatch`.
- A dispatch that raises is logged (Sentry reports it), the service records the error on the
  trigger, and the relay hands the trigger over again after its grace, as after a failed task.
- A worker killed mid-dispatch: its claimed, undispatched triggers are published by the relay;
  sends it had started hold leases that run out, and the sweeper queues them (as for a task).
- Around each dispatch, what the worker's Celery signals do around a task: the trigger's
  request id is the current one, and this thread's database connection is dropped when broken
  or past CONN_MAX_AGE (config/celery_signals.py).
- Stopping waits for the running dispatches, at most a bounded time; the threads are daemons.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sentry_sdk
from django.db import close_old_connections, connections

from foundation.request_context import request_id_var
from notifications import dispatch, metrics
from notifications.models import NotificationTrigger

logger = logging.getLogger(__name__)

# How long stop() waits for the running dispatches (seconds): two vendor calls at their
# timeouts, with room to settle. A dispatch still running then is left to its leases.
STOP_WAIT_SECONDS = 30.0
# The name Sentry gives a dispatch run here: the Celery task's, so both paths read alike.
TRACE_NAME = "notifications.tasks.trigger_dispatch"


@dataclass(frozen=True)
class Claim:
    """A trigger the listener claimed: its id, its request id, and its row as the claim returned
    it (None when the claim left it out, a large one: the dispatch reads it)."""

    trigger_id: int
    request_id: str | None
    trigger: NotificationTrigger | None = None


class DispatchThreads:
    """`threads` daemon threads that each dispatch one trigger at a time. `start()` once;
    `take()` from one thread only (the listener's); `stop()` once."""

    def __init__(self, *, threads: int, trigger_dispatch: Callable[..., object] = dispatch.trigger_dispatch):
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads = threads
        self._trigger_dispatch = trigger_dispatch
        self._jobs: queue.SimpleQueue[Claim | None] = queue.SimpleQueue()
        self._idle = threads
        self._changed = threading.Condition()
        self._workers = [
            threading.Thread(target=self._work, name=f"trigger-dispatch-{number}", daemon=True) for number in range(threads)
        ]

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def idle(self) -> int:
        """How many threads would start a dispatch now."""
        with self._changed:
            return self._idle

    def running(self) -> int:
        """How many dispatches are running (or just taken)."""
        return self.threads - self.idle()

    def take(self, claimed: list[Claim]) -> int:
        """Start dispatching the first of `claimed`, as many as there are idle threads; returns
        how many were taken (the caller publishes the rest)."""
        with self._changed:
            taken = min(len(claimed), self._idle)
            self._idle -= taken
        for claim in claimed[:taken]:
            self._jobs.put(claim)
        return taken

    def stop(self, *, timeout: float = STOP_WAIT_SECONDS) -> bool:
        """Wait for the running dispatches (at most `timeout`), then let the threads end; True
        if none was still running. Call after the last `take()`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._idle < self.threads and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            finished = self._idle == self.threads
        for _ in self._workers:
            self._jobs.put(None)
        return finished

    def _work(self) -> None:
        while (claim := self._jobs.get()) is not None:
            try:
                self._dispatch_one(claim)
            finally:
                with self._changed:
                    self._idle += 1
                    self._changed.notify_all()
        connections.close_all()  # this thread's own connections: PostgreSQL need not wait to see them go

    def _dispatch_one(self, claim: Claim) -> None:
        """One dispatch, from the claimed row when there is one; never raises (whatever it
        raised, SystemExit included, would end this thread while it still counts as one)."""
        trigger_id = claim.trigger_id
        token = request_id_var.set(claim.request_id or "-")
        started = time.perf_counter()
        result = "ok"
        with _traced(trigger_id):
            try:
                close_old_connections()
                self._trigger_dispatch(trigger_id=trigger_id, claimed=claim.trigger)
            except BaseException:
                result = "failed"
                logger.exception("dispatch of trigger %s failed; the relay hands it over again after its grace",
                                 trigger_id, extra={"trigger_id": trigger_id})
            finally:
                with contextlib.suppress(Exception):  # a broken connection is dropped, not raised
                    close_old_connections()
                request_id_var.reset(token)
        metrics.TRIGGER_DISPATCHES_HERE.labels(result=result).inc()
        metrics.TRIGGER_DISPATCH_HERE_SECONDS.observe(time.perf_counter() - started)


@contextlib.contextmanager
def _traced(trigger_id: int) -> Iterator[None]:
    """A Sentry scope and transaction of its own per dispatch, as Celery's integration gives a
    task, its events tagged the way that integration tags a task's (`celery-job`), so both
    paths group alike; nothing when Sentry is off."""
    if not sentry_sdk.get_client().is_active():
        yield
        return
    with sentry_sdk.isolation_scope() as scope:
        scope.set_extra("celery-job", {"task_name": TRACE_NAME, "args": [trigger_id], "kwargs": {},
                                       "run_by": "trigger listener thread"})
        with sentry_sdk.start_transaction(op="queue.process", name=TRACE_NAME, source="task"):
            yield
