"""The workers' trigger listener: the notify hand-off (settings.TRIGGER_HANDOFF_VIA = "notify").

A trigger's INSERT notifies PostgreSQL's channel (`statements.TRIGGER_CHANNEL`) with its id;
PostgreSQL delivers that on COMMIT, never for a checkout that rolled back. A thread in each
Celery worker (started and stopped by config/celery_signals.py) LISTENs on its own connection
and hands what it hears on, to its own dispatch threads or to the broker:

1. Collect: the first id, then whatever else has arrived (within BATCH_WAIT_SECONDS), at most
   `batch_max` ids.
2. Claim, in one UPDATE ... RETURNING: only triggers still undispatched, not dead, never
   published by the relay (`publish_count` 0, so the relay's dead-trigger counting is untouched)
   and not claimed by another listener (`handed_over_at`). With several workers listening, each
   trigger is claimed, and so published, by one of them. The claim also moves `relay_after` to
   at least OUTBOX_RELAY_GRACE from now, as the web's hand-off leaves a fresh trigger alone.
3. Dispatch here what the listener's own idle threads can start at once (a worker of the
   threads pool; trigger_dispatch_threads.py), each from the row its claim returned (not read
   again), and publish `trigger_dispatch` for the rest over
   one producer connection, each publish bounded in time (publisher.tasks_publish_bounded).
   What the broker refuses loses its hand-over time again (so the relay does not count it
   among the queued, see outbox._relay_due) and stays undispatched: the relay publishes it
   after its grace. A worker killed between claim and publish, or while dispatching here,
   leaves the time set; the relay publishes such a trigger once the queue holds only newer
   ones. After a refusal the listener claims, for the publisher's cool-down, only what its
   idle threads dispatch here (the rest is the relay's turn), so its memory stays flat.

(Re)connecting: LISTEN first, then one catch-up pass claims (as in 2) the undispatched triggers
created before it, which nobody may have heard about (committed while no listener was
connected), so a restart or a lost connection does not wait for the relay's grace. Connection
failures are retried with capped, jittered backoff. The relay stays the safety net for anything
this misses (a worker killed between claim and publish, the listener disabled).

Bounded: `batch_max` ids per claim (each row returned whole only up to WHOLE_ROW_MAX_BYTES,
and only while a dispatch thread is idle), CATCH_UP_BATCHES claims per (re)connect, every publish
bounded in time, at most `dispatch_threads` dispatches here at once (none waits in memory), and
`stop()` returns within about IDLE_WAKE_SECONDS plus one bounded publish, plus the running
dispatches' bounded wait (the threads are daemons: they never keep the worker from exiting).
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import timedelta
from functools import cache

import psycopg
from django.conf import settings
from django.db import connection
from django.utils import timezone

from notifications import metrics
from notifications.models import NotificationTrigger
from notifications.outbox import TRIGGER_DISPATCH_TASK
from notifications.publisher import publisher_suppressed, tasks_publish_bounded
from notifications.statements import TRIGGER_CHANNEL, trigger_from_listener_row
from notifications.trigger_dispatch_threads import Claim, DispatchThreads

logger = logging.getLogger(__name__)

# At most this many triggers are claimed and published together.
BATCH_MAX = 200
# After the first notification, wait this long (seconds) for more to publish them together. 0:
# take what has arrived already (what came in during the previous claim and publish), so a lone
# trigger is not held back; a 5 ms window cost its full 5 ms per trigger (bench/handoff_latency.py).
BATCH_WAIT_SECONDS = 0.0
# A quiet listener checks this often (seconds) whether it must stop.
IDLE_WAKE_SECONDS = 0.5
# Backoff between connection attempts (seconds): doubled per failure up to the cap, jittered.
RECONNECT_DELAY_FIRST = 0.2
RECONNECT_DELAY_MAX = 10.0
# On (re)connect, the catch-up claims at most this many batches; the relay takes any rest.
CATCH_UP_BATCHES = 20
# A PostgreSQL that does not answer must not hold the listener (seconds).
CONNECT_TIMEOUT_SECONDS = 3
# How long stop() waits for the thread before leaving it (a daemon) behind (seconds).
STOP_WAIT_SECONDS = 10.0
# The listener's connection, as PostgreSQL's pg_stat_activity names it.
APPLICATION_NAME = "beacon-trigger-listener"
# A claim returns a trigger's row whole, for a dispatch here to start from without reading it
# again, when its payload and recipients take at most this many bytes as JSON text; a larger
# one (the events API takes bodies up to 2 MiB) comes back without them and its dispatch reads
# it. So a claim holds at most `batch_max` times this much in memory.
WHOLE_ROW_MAX_BYTES = 16 * 1024

_UNCLAIMED = "dispatched_at IS NULL AND dead_at IS NULL AND publish_count = 0 AND handed_over_at IS NULL"


class TriggerListener:
    """One listening thread with its own PostgreSQL session. `start()` once, `stop()` once."""

    def __init__(self, *, dsn: str, batch_max: int = BATCH_MAX, reconnect_delay_first: float = RECONNECT_DELAY_FIRST,
                 dispatch_threads: int = 0):
        """`dispatch_threads`: how many claims at once this process dispatches itself (0: it
        publishes every claim); only for a worker whose tasks run as threads of this process."""
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self.dsn = dsn
        self.batch_max = batch_max
        self.reconnect_delay_first = reconnect_delay_first
        self.dispatch_here = DispatchThreads(threads=dispatch_threads) if dispatch_threads > 0 else None
        # The server process of the current connection (None while disconnected).
        self.backend_pid: int | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trigger-listener", daemon=True)

    def start(self) -> None:
        if self.dispatch_here is not None:
            self.dispatch_here.start()
        self._thread.start()

    def stop_request(self) -> None:
        """Ask the thread to stop, without waiting (safe from a signal handler)."""
        self._stopping.set()

    def stop(self, *, timeout: float = STOP_WAIT_SECONDS) -> bool:
        """Ask the thread to stop and wait for it, at most `timeout`, then for the dispatches
        it started here (their own bounded wait); True if it has stopped and they finished."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        stopped = not self._thread.is_alive()
        if self.dispatch_here is not None and stopped:
            stopped = self.dispatch_here.stop()
        return stopped

    @property
    def listening(self) -> bool:
        return self.backend_pid is not None

    # --- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        delay = self.reconnect_delay_first
        while not self._stopping.is_set():
            try:
                with self._connect() as connection:
                    metrics.TRIGGER_LISTENER_CONNECTS.labels(result="ok").inc()
                    delay = self.reconnect_delay_first
                    self._listen(connection)
            except psycopg.Error as exc:
                metrics.TRIGGER_LISTENER_CONNECTS.labels(result="failed").inc()
                logger.warning("trigger listener lost PostgreSQL (%s); reconnecting in %.1fs", type(exc).__name__, delay)
            except Exception:  # never let the thread die silently: the relay alone would be left
                logger.exception("trigger listener failed; restarting in %.1fs", delay)
            finally:
                self.backend_pid = None
            if self._stopping.wait(delay * random.uniform(0.8, 1.2)):
                break
            delay = min(delay * 2, RECONNECT_DELAY_MAX)
        logger.info("trigger listener stopped")

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(
            self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name=APPLICATION_NAME,
            # A peer that vanished without closing (a host lost) is noticed within about a minute.
            keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3,
        )

    def _listen(self, connection: psycopg.Connection) -> None:
        connection.execute(f"LISTEN {TRIGGER_CHANNEL}")
        self.backend_pid = connection.info.backend_pid
        logger.info("trigger listener listening (backend %s)", self.backend_pid)
        self._catch_up(connection)
        while not self._stopping.is_set():
            trigger_ids = self._batch_collect(connection)
            if trigger_ids:
                self._hand_over(connection, _claim_sql(), {"ids": trigger_ids})

    def _batch_collect(self, connection: psycopg.Connection) -> list[int]:
        """The ids notified: the first within IDLE_WAKE_SECONDS, then what follows it closely."""
        ids: list[int] = []
        for notify in connection.notifies(timeout=IDLE_WAKE_SECONDS, stop_after=1):
            _id_add(ids, notify.payload)
        if ids and self.batch_max > 1:
            for notify in connection.notifies(timeout=BATCH_WAIT_SECONDS, stop_after=self.batch_max - 1):
                _id_add(ids, notify.payload)
        return ids

    def _catch_up(self, connection: psycopg.Connection) -> None:
        """Claim and publish the unclaimed triggers created before LISTEN took effect."""
        before = timezone.now()
        for _ in range(CATCH_UP_BATCHES):
            if self._stopping.is_set():
                return
            claimed = self._hand_over(connection, _catch_up_sql(), {"before": before, "limit": self.batch_max})
            if claimed < self.batch_max:
                return

    def _hand_over(self, connection: psycopg.Connection, claim_sql: str, params: dict) -> int:
        """Claim with `claim_sql`; dispatch here what idle threads can take, publish the rest;
        returns how many were claimed."""
        idle = self.dispatch_here.idle() if self.dispatch_here is not None else 0
        if publisher_suppressed():  # the broker refused lately: claim only what is dispatched here
            if not idle:
                return 0  # the relay's turn
            claim_sql, params = _claim_limited(claim_sql, params, idle)
        now = timezone.now()
        relay_after = now + timedelta(seconds=settings.OUTBOX_RELAY_GRACE)
        # Whole rows only for threads to start from: with none idle, every claim is published by id.
        rows = connection.execute(claim_sql, {**params, "now": now, "relay_after": relay_after, "whole": idle > 0,
                                              "whole_max": WHOLE_ROW_MAX_BYTES}).fetchall()
        if not rows:
            return 0
        claimed = [_claim_from_row(row) for row in rows]
        here = self.dispatch_here.take(claimed) if self.dispatch_here is not None else 0
        metrics.TRIGGER_LISTENER_HANDOVERS.labels(result="dispatched_here").inc(here)
        rest = claimed[here:]
        if not rest:
            return len(claimed)
        calls = [([claim.trigger_id], {"request_id": claim.request_id or "-"}) for claim in rest]
        published = tasks_publish_bounded(TRIGGER_DISPATCH_TASK, calls=calls)
        metrics.TRIGGER_LISTENER_HANDOVERS.labels(result="published").inc(published)
        if published < len(rest):
            # Not in the broker: no hand-over time, so the relay does not take them for queued.
            connection.execute(_give_back_sql(), {"ids": [claim.trigger_id for claim in rest[published:]]})
            metrics.TRIGGER_LISTENER_HANDOVERS.labels(result="left_to_relay").inc(len(rest) - published)
        return len(claimed)


def _claim_limited(claim_sql: str, params: dict, most: int) -> tuple[str, dict]:
    """The claim for at most `most` triggers. Every listener hears the same ids: each takes
    ones the others have not locked (SKIP LOCKED), so together they claim up to all their
    idle threads, not the same few."""
    if "ids" in params:
        return _claim_some_sql(), {**params, "limit": most}
    return claim_sql, {**params, "limit": min(params["limit"], most)}


def _id_add(ids: list[int], payload: str) -> None:
    try:
        ids.append(int(payload))
    except ValueError:
        logger.warning("trigger listener ignored a notification that is not a trigger id")


def _claim_where(where: str) -> str:
    """The claim: hand-over time set, relay kept away for its grace, on the rows `where` picks.
    Returns per row whether it is whole (wanted whole, and within WHOLE_ROW_MAX_BYTES, measured
    once), its id and request id, then all its columns, the payload and recipients only when
    whole (`_claim_from_row`)."""
    return f"""
        WITH claimed AS (
            UPDATE {_table()} SET handed_over_at = %(now)s, relay_after = GREATEST(relay_after, %(relay_after)s)
             WHERE {where}
         RETURNING *)
        SELECT c.whole, c.id, c.request_id, {_returned_columns_sql()}
          FROM (SELECT *, {_WHOLE_SQL} AS whole FROM claimed) AS c"""  # noqa: S608


# CASE: the sizes are not computed at all when no row is wanted whole.
_WHOLE_SQL = "CASE WHEN %(whole)s THEN octet_length(payload::text) + octet_length(recipients::text) <= %(whole_max)s ELSE false END"
# The columns a row that is not whole leaves out (NULL).
_BULKY_FIELDS = ("payload", "recipients")


@cache
def _returned_columns_sql() -> str:
    """Every column of the trigger, in statements.trigger_from_listener_row's order, the bulky
    ones only when the row is whole."""
    columns = []
    for field in NotificationTrigger._meta.concrete_fields:
        column = f"c.{connection.ops.quote_name(field.column)}"
        columns.append(f"CASE WHEN c.whole THEN {column} END" if field.name in _BULKY_FIELDS else column)
    return ", ".join(columns)


def _claim_from_row(row: tuple) -> Claim:
    whole, trigger_id, request_id, *columns = row
    return Claim(trigger_id=trigger_id, request_id=request_id,
                 trigger=trigger_from_listener_row(tuple(columns)) if whole else None)


def _table() -> str:
    return NotificationTrigger._meta.db_table


@cache
def _claim_sql() -> str:
    return _claim_where(f"id = ANY(%(ids)s) AND {_UNCLAIMED}")


@cache
def _claim_some_sql() -> str:
    return _claim_where(f"""id IN (SELECT id FROM {_table()} WHERE id = ANY(%(ids)s) AND {_UNCLAIMED}
                       ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)""")  # noqa: S608


@cache
def _catch_up_sql() -> str:
    return _claim_where(f"""id IN (SELECT id FROM {_table()} WHERE {_UNCLAIMED} AND created_at < %(before)s
                       ORDER BY created_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)""")  # noqa: S608


@cache
def _give_back_sql() -> str:
    return f"UPDATE {_table()} SET handed_over_at = NULL WHERE id = ANY(%(ids)s) AND dispatched_at IS NULL"  # noqa: S608


# --- the worker's one listener (config/celery_signals.py) ------------------------------------
_worker_listener: TriggerListener | None = None
_worker_listener_lock = threading.Lock()


def worker_trigger_listener_start(*, tasks_run_in_threads_here: bool) -> TriggerListener | None:
    """Start this worker's listener, if the notify hand-off is on and the listener enabled;
    safe to call twice. Returns it (None when not started).

    `tasks_run_in_threads_here`: the worker's tasks run as threads of this process (its pool is
    `threads`), so the listener may dispatch here too (TRIGGER_LISTENER_DISPATCH_THREADS); a
    prefork worker's main process only consumes, so its listener publishes every claim."""
    global _worker_listener
    if settings.TRIGGER_HANDOFF_VIA != "notify" or not settings.TRIGGER_LISTENER_ENABLED:
        return None
    with _worker_listener_lock:
        if _worker_listener is None:
            dispatch_threads = settings.TRIGGER_LISTENER_DISPATCH_THREADS if tasks_run_in_threads_here else 0
            _worker_listener = TriggerListener(dsn=settings.TRIGGER_LISTENER_DATABASE_URL, dispatch_threads=dispatch_threads)
            _worker_listener.start()
        return _worker_listener


def worker_dispatches_here_running() -> int:
    """How many trigger dispatches this worker's listener threads are running now."""
    listener = _worker_listener
    if listener is None or listener.dispatch_here is None:
        return 0
    return listener.dispatch_here.running()


def worker_trigger_listener_stop(*, wait: bool) -> None:
    """Stop this worker's listener (if any): ask it to, and with `wait` wait a bounded time for
    it; safe to call twice."""
    global _worker_listener
    with _worker_listener_lock:
        listener = _worker_listener
        if wait:
            _worker_listener = None
    if listener is None:
        return
    if not wait:
        listener.stop_request()
    elif not listener.stop():
        logger.warning("trigger listener or its dispatches did not finish in time; left behind (daemon threads)")
