"""The listener's own dispatch threads (notifications/trigger_dispatch_threads.py): what they take,
what they leave to the broker, failures, and stopping. The dispatch is a stand-in here; the
listener tests (test_trigger_listener.py) run the real one against PostgreSQL, the broker and
the sandbox vendors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from foundation.request_context import request_id_get
from harness.processes import wait_until
from notifications.models import NotificationTrigger
from notifications.trigger_dispatch_threads import Claim, DispatchThreads


class Recorder:
    """A stand-in dispatch that records (trigger id, request id), and the claimed rows it was
    given, waits while `hold` is clear, and raises for the ids in `failing`."""

    def __init__(self, *, failing: tuple[int, ...] = ()) -> None:
        self.calls: list[tuple[int, str]] = []
        self.rows: dict[int, NotificationTrigger | None] = {}
        self.hold = threading.Event()
        self.hold.set()
        self.failing = failing

    def __call__(self, *, trigger_id: int, claimed: NotificationTrigger | None = None) -> None:
        self.calls.append((trigger_id, request_id_get()))
        self.rows[trigger_id] = claimed
        self.hold.wait(10)
        if trigger_id in self.failing:
            raise RuntimeError("the database went away")


@pytest.fixture
def started() -> Iterator[list[DispatchThreads]]:
    pools: list[DispatchThreads] = []
    yield pools
    for pool in pools:
        pool.stop(timeout=5)


def threads_start(started: list[DispatchThreads], recorder: Recorder, threads: int) -> DispatchThreads:
    pool = DispatchThreads(threads=threads, trigger_dispatch=recorder)
    pool.start()
    started.append(pool)
    return pool


def dispatches_here(result: str) -> float:
    return REGISTRY.get_sample_value("beacon_trigger_dispatches_here_total", {"result": result}) or 0.0


def test_each_trigger_taken_is_dispatched_once_with_its_own_request_id(started) -> None:
    recorder = Recorder()
    pool = threads_start(started, recorder, threads=2)

    assert pool.take([Claim(11, "req-a"), Claim(12, None)]) == 2

    wait_until(lambda: len(recorder.calls) == 2 and pool.idle() == 2, timeout=5, what="both dispatches")
    assert sorted(recorder.calls) == [(11, "req-a"), (12, "-")]


def test_a_claim_with_its_row_is_dispatched_from_that_row_and_one_without_reads_its_own(started) -> None:
    recorder = Recorder()
    pool = threads_start(started, recorder, threads=2)
    row = NotificationTrigger(pk=21, event_type="order.paid", request_id="req-21", payload={"order": "A-21"})

    assert pool.take([Claim(21, "req-21", row), Claim(22, "req-22")]) == 2

    wait_until(lambda: len(recorder.calls) == 2 and pool.idle() == 2, timeout=5, what="both dispatches")
    assert recorder.rows == {21: row, 22: None}


def test_only_idle_threads_take_triggers_and_the_caller_keeps_the_rest(started) -> None:
    recorder = Recorder()
    recorder.hold.clear()  # every dispatch waits: its thread stays busy
    pool = threads_start(started, recorder, threads=2)

    assert pool.take([Claim(1, "a"), Claim(2, "b"), Claim(3, "c")]) == 2  # 3 is left to the caller (the broker)
    wait_until(lambda: len(recorder.calls) == 2, timeout=5, what="two dispatches running")
    assert pool.idle() == 0
    assert pool.take([Claim(4, "d")]) == 0

    recorder.hold.set()
    wait_until(lambda: pool.idle() == 2, timeout=5, what="the threads idle again")
    assert pool.take([Claim(5, "e")]) == 1
    wait_until(lambda: len(recorder.calls) == 3, timeout=5, what="the next dispatch")
    assert {trigger_id for trigger_id, _ in recorder.calls} == {1, 2, 5}


def test_a_dispatch_that_raises_is_logged_and_counted_and_its_thread_goes_on(started, caplog) -> None:
    recorder = Recorder(failing=(7,))
    pool = threads_start(started, recorder, threads=1)
    failed_before, ok_before = dispatches_here("failed"), dispatches_here("ok")

    with caplog.at_level(logging.ERROR, logger="notifications.trigger_dispatch_threads"):
        assert pool.take([Claim(7, "req-7")]) == 1
        wait_until(lambda: pool.idle() == 1, timeout=5, what="the failed dispatch to end")
        assert pool.take([Claim(8, "req-8")]) == 1
        wait_until(lambda: len(recorder.calls) == 2 and pool.idle() == 1, timeout=5, what="the next dispatch")

    assert dispatches_here("failed") == failed_before + 1
    assert dispatches_here("ok") == ok_before + 1
    [record] = [r for r in caplog.records if "dispatch of trigger 7 failed" in r.getMessage()]
    assert record.exc_info is not None and record.trigger_id == 7


def test_a_dispatch_that_exits_is_counted_failed_and_its_thread_goes_on(started, caplog) -> None:
    def exits(*, trigger_id: int, claimed: NotificationTrigger | None) -> None:
        calls.append(trigger_id)
        if trigger_id == 1:
            raise SystemExit(3)  # ends a thread silently, were it not caught

    calls: list[int] = []
    pool = DispatchThreads(threads=1, trigger_dispatch=exits)
    pool.start()
    started.append(pool)
    failed_before = dispatches_here("failed")

    assert pool.take([Claim(1, "a")]) == 1
    wait_until(lambda: dispatches_here("failed") == failed_before + 1, timeout=5, what="the failure counted")
    assert pool.take([Claim(2, "b")]) == 1
    wait_until(lambda: calls == [1, 2], timeout=5, what="the one thread to dispatch again")
    assert pool._workers[0].is_alive()


def test_stop_waits_for_the_running_dispatches_but_no_longer_than_its_timeout(started) -> None:
    recorder = Recorder()
    recorder.hold.clear()
    pool = DispatchThreads(threads=2, trigger_dispatch=recorder)
    pool.start()
    pool.take([Claim(1, "a")])
    wait_until(lambda: recorder.calls, timeout=5, what="a dispatch running")

    assert pool.stop(timeout=0.2) is False  # still running: left to its leases

    recorder.hold.set()  # the dispatch ends, then every thread
    wait_until(lambda: all(not worker.is_alive() for worker in pool._workers), timeout=5, what="the threads to end")
    assert recorder.calls == [(1, "a")]


def test_stop_returns_at_once_when_nothing_runs(started) -> None:
    pool = DispatchThreads(threads=3, trigger_dispatch=Recorder())
    pool.start()

    assert pool.stop(timeout=5) is True
    wait_until(lambda: all(not worker.is_alive() for worker in pool._workers), timeout=5, what="the threads to end")


def test_dispatch_threads_need_a_positive_count() -> None:
    with pytest.raises(ValueError, match="threads"):
        DispatchThreads(threads=0)
