"""VendorCircuit against the real Redis (REDIS_URL), including races between real processes.

Every test uses its own breaker name (uuid), so nothing collides with a running dev stack, and
deletes its keys afterwards. No database.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from prometheus_client import REGISTRY
from redis.backoff import NoBackoff
from redis.retry import Retry

from notifications import redis_client
from notifications.circuit_breaker import BreakerConfig, CircuitState, VendorCircuit
from notifications.redis_client import breaker_redis

FORK = multiprocessing.get_context("fork")
FAST = BreakerConfig(window_size=10, minimum_calls=4, failure_rate_threshold=50.0, open_seconds=0.3, half_open_trials=3)


@pytest.fixture
def name() -> Iterator[str]:
    """A breaker name no other test or running stack uses; its keys are deleted afterwards."""
    breaker_name = f"test:{uuid.uuid4().hex}"
    yield breaker_name
    breaker_redis().delete(*VendorCircuit(breaker_name, FAST).keys)


@pytest.fixture
def dead_redis() -> redis.Redis:
    """A client for a port nobody listens on, failing within milliseconds."""
    redis_client._last_warning.clear()
    return redis.Redis(
        host="127.0.0.1", port=1, socket_timeout=0.05, socket_connect_timeout=0.05, retry=Retry(NoBackoff(), 0)
    )


def _open(circuit: VendorCircuit) -> None:
    for _ in range(circuit.config.minimum_calls):
        assert circuit.try_acquire()
        circuit.record(success=False, duration=0.01)
    assert circuit.snapshot().state == CircuitState.OPEN


def _wait_until_half_open_is_due(circuit: VendorCircuit) -> None:
    open_until = circuit.snapshot().open_until
    assert open_until is not None
    time.sleep(max(0.0, open_until - time.time()) + 0.05)


def _half_open(circuit: VendorCircuit) -> None:
    _open(circuit)
    _wait_until_half_open_is_due(circuit)


def _run_in_processes(target: Callable[..., None], count: int, *args: Any) -> list[Any]:
    """Start `count` forked processes on target(barrier, results, *args) and collect their results."""
    barrier = FORK.Barrier(count)
    results = FORK.Queue()
    processes = [FORK.Process(target=target, args=(barrier, results, *args)) for _ in range(count)]
    for process in processes:
        process.start()
    collected = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return collected


def _race_try_acquire(barrier: Any, results: Any, name: str, config: BreakerConfig) -> None:
    circuit = VendorCircuit(name, config, redis=redis.Redis.from_url(settings.REDIS_URL))
    barrier.wait()
    results.put(circuit.try_acquire())


def _record_many(barrier: Any, results: Any, name: str, config: BreakerConfig, calls: int) -> None:
    circuit = VendorCircuit(name, config, redis=redis.Redis.from_url(settings.REDIS_URL))
    barrier.wait()
    for i in range(calls):
        circuit.record(success=i % 3 != 0, duration=0.01)
    results.put(calls)


def _naive_increment_many(barrier: Any, results: Any, key: str, calls: int) -> None:
    """What a GET-then-SET counter (pybreaker-style storage) does; the sleep stands for the round trip."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    barrier.wait()
    for _ in range(calls):
        value = int(client.get(key) or 0)
        time.sleep(0.001)
        client.set(key, value + 1)
    results.put(calls)


def _client_id_in_child(barrier: Any, results: Any) -> None:
    barrier.wait()
    results.put(breaker_redis().client_id())


def test_it_opens_at_the_failure_threshold_only_after_the_minimum_calls(name: str) -> None:
    circuit = VendorCircuit(name, FAST)
    for _ in range(3):
        circuit.record(success=False, duration=0.01)
    assert circuit.snapshot().state == CircuitState.CLOSED  # 100% failures, but 3 < minimum_calls

    circuit.reset()
    for success in (True, True, True, False):
        circuit.record(success=success, duration=0.01)
    assert circuit.snapshot().state == CircuitState.CLOSED  # 25% < 50%

    circuit.reset()
    for success in (True, True, False, False):
        circuit.record(success=success, duration=0.01)
    snapshot = circuit.snapshot()
    assert snapshot.state == CircuitState.OPEN  # exactly 50% >= 50%
    assert (snapshot.calls, snapshot.failures, snapshot.failure_rate) == (4, 2, 50.0)
    assert not circuit.try_acquire()


def test_slow_calls_count_toward_opening(name: str) -> None:
    config = BreakerConfig(
        window_size=10,
        minimum_calls=4,
        failure_rate_threshold=100.0,
        slow_call_duration=0.1,
        slow_call_rate_threshold=50.0,
    )
    circuit = VendorCircuit(name, config)
    circuit.record(success=True, duration=0.05)
    circuit.record(success=True, duration=0.05)
    circuit.record(success=True, duration=0.5)
    assert circuit.snapshot().state == CircuitState.CLOSED
    circuit.record(success=True, duration=0.5)
    snapshot = circuit.snapshot()
    assert snapshot.state == CircuitState.OPEN
    assert (snapshot.slow_calls, snapshot.failures) == (2, 0)


def test_it_stays_open_for_the_wait_then_half_opens(name: str) -> None:
    circuit = VendorCircuit(name, FAST)
    _open(circuit)
    snapshot = circuit.snapshot()
    assert snapshot.opened_at is not None and snapshot.open_until is not None
    assert snapshot.open_until - snapshot.opened_at == pytest.approx(0.3, abs=0.001)
    assert not circuit.try_acquire()

    _wait_until_half_open_is_due(circuit)
    assert circuit.try_acquire()
    assert circuit.snapshot().state == CircuitState.HALF_OPEN


def test_half_open_trial_budget_holds_across_processes(name: str) -> None:
    circuit = VendorCircuit(name, FAST)
    _half_open(circuit)

    granted = _run_in_processes(_race_try_acquire, 8, name, FAST)

    assert sorted(granted) == [False] * 5 + [True] * 3
    assert circuit.snapshot().state == CircuitState.HALF_OPEN
    assert not circuit.try_acquire()


def test_it_closes_after_all_trials_succeed(name: str) -> None:
    circuit = VendorCircuit(name, FAST)
    _half_open(circuit)
    for trial in range(3):
        assert circuit.try_acquire()
        assert circuit.snapshot().state == CircuitState.HALF_OPEN, trial
        circuit.record(success=True, duration=0.01)
    snapshot = circuit.snapshot()
    assert snapshot.state == CircuitState.CLOSED
    assert (snapshot.calls, snapshot.failures, snapshot.opened_at) == (0, 0, None)


@pytest.mark.parametrize(("success", "duration"), [(False, 0.01), (True, 60.0)], ids=["failed", "slow"])
def test_a_failed_or_slow_trial_reopens(name: str, success: bool, duration: float) -> None:
    circuit = VendorCircuit(name, FAST)
    _half_open(circuit)
    assert circuit.try_acquire()
    circuit.record(success=True, duration=0.01)
    assert circuit.try_acquire()
    circuit.record(success=success, duration=duration)
    assert circuit.snapshot().state == CircuitState.OPEN
    assert not circuit.try_acquire()


def test_an_outcome_from_before_a_transition_does_not_count_as_a_trial(name: str) -> None:
    config = BreakerConfig(window_size=10, minimum_calls=4, open_seconds=0.3, half_open_trials=1)
    slow_caller, other = VendorCircuit(name, config), VendorCircuit(name, config)
    assert slow_caller.try_acquire()  # permitted while CLOSED
    _half_open(other)
    assert other.try_acquire()  # the only trial permit

    slow_caller.record(success=True, duration=0.01)
    assert other.snapshot().state == CircuitState.HALF_OPEN
    other.record(success=True, duration=0.01)
    assert other.snapshot().state == CircuitState.CLOSED


def test_forced_open_rejects_everything_and_records_who(name: str) -> None:
    circuit = VendorCircuit(name, FAST)
    circuit.force("open", by="alice")
    snapshot = VendorCircuit(name, FAST).snapshot()
    assert snapshot.state == CircuitState.FORCED_OPEN
    assert snapshot.forced_by == "alice"
    assert snapshot.forced_at == pytest.approx(time.time(), abs=5)
    assert not any(VendorCircuit(name, FAST).try_acquire() for _ in range(5))


def test_forced_closed_allows_everything_and_none_returns_to_automatic(name: str) -> None:
    circuit = VendorCircuit(name, FAST)
    circuit.force("closed", by="bob")
    for _ in range(10):
        assert circuit.try_acquire()
        circuit.record(success=False, duration=0.01)
    assert circuit.snapshot().state == CircuitState.FORCED_CLOSED

    circuit.force(None, by="bob")
    snapshot = circuit.snapshot()
    assert (snapshot.state, snapshot.calls, snapshot.forced_by, snapshot.forced_at) == (
        CircuitState.CLOSED,
        0,
        None,
        None,
    )
    with pytest.raises(ValueError):
        circuit.force("half_open", by="bob")


def test_release_gives_a_half_open_permit_back(name: str) -> None:
    config = BreakerConfig(window_size=10, minimum_calls=4, open_seconds=0.3, half_open_trials=1)
    first, second = VendorCircuit(name, config), VendorCircuit(name, config)
    _half_open(first)
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    first.release()  # twice is harmless
    assert second.try_acquire()
    assert not first.try_acquire()


def test_expired_trial_permits_are_handed_out_again(name: str) -> None:
    # Permits live max(open_seconds, slow_call_duration) = 0.3 s.
    config = BreakerConfig(
        window_size=10, minimum_calls=4, open_seconds=0.3, slow_call_duration=0.2, half_open_trials=1
    )
    crashed, survivor = VendorCircuit(name, config), VendorCircuit(name, config)
    _half_open(crashed)
    assert crashed.try_acquire()  # ...and never reports
    assert not survivor.try_acquire()
    time.sleep(0.5)
    assert survivor.try_acquire()
    survivor.record(success=True, duration=0.01)
    assert survivor.snapshot().state == CircuitState.CLOSED


def test_the_window_slides_and_old_outcomes_drop_out(name: str) -> None:
    config = BreakerConfig(window_size=4, minimum_calls=4, failure_rate_threshold=75.0)
    circuit = VendorCircuit(name, config)
    for success in (False, False, True, True, True, True):
        circuit.record(success=success, duration=0.01)
    snapshot = circuit.snapshot()
    assert (snapshot.state, snapshot.calls, snapshot.failures) == (CircuitState.CLOSED, 4, 0)

    for _ in range(2):
        circuit.record(success=False, duration=0.01)
    assert circuit.snapshot().state == CircuitState.CLOSED  # 2 of the last 4
    circuit.record(success=False, duration=0.01)
    snapshot = circuit.snapshot()
    assert (snapshot.state, snapshot.calls, snapshot.failures) == (CircuitState.OPEN, 4, 3)


class ScriptCountingRedis(redis.Redis):
    """A real client of the test Redis that counts the scripts it runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scripts_run = 0

    def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        self.scripts_run += 1
        return super().evalsha(*args, **kwargs)


@pytest.fixture
def counting_redis() -> Iterator[ScriptCountingRedis]:
    client = ScriptCountingRedis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def _call(circuit: VendorCircuit, *, success: bool, duration: float = 0.01) -> None:
    assert circuit.try_acquire()
    circuit.record(success=success, duration=duration)


def _window(circuit: VendorCircuit) -> tuple[Any, ...]:
    snapshot = circuit.snapshot()
    return (snapshot.state, snapshot.calls, snapshot.failures, snapshot.slow_calls,
            breaker_redis().lrange(circuit.keys[1], 0, -1))


def test_while_the_window_fills_every_success_is_recorded(name: str, counting_redis: ScriptCountingRedis) -> None:
    circuit = VendorCircuit(name, FAST, redis=counting_redis)
    _call(circuit, success=True)  # loads the scripts
    counting_redis.scripts_run = 0

    for _ in range(FAST.window_size - 1):
        _call(circuit, success=True)

    assert counting_redis.scripts_run == 2 * (FAST.window_size - 1)
    assert _window(circuit)[:4] == (CircuitState.CLOSED, FAST.window_size, 0, 0)


def test_a_fast_success_into_a_full_window_of_fast_successes_is_not_sent_to_redis(
    name: str, counting_redis: ScriptCountingRedis
) -> None:
    circuit = VendorCircuit(name, FAST, redis=counting_redis)
    for _ in range(FAST.window_size):
        _call(circuit, success=True)
    before = _window(circuit)
    counting_redis.scripts_run = 0

    _call(circuit, success=True)

    assert counting_redis.scripts_run == 1  # the acquire only
    assert _window(circuit) == before  # what recording it would have left: a success for a success


@pytest.mark.parametrize(("success", "duration", "counted"), [(False, 0.01, (1, 0)), (True, 6.0, (0, 1))],
                         ids=["failure", "slow success"])
def test_a_failure_or_a_slow_success_into_a_clean_window_is_recorded(
    name: str, counting_redis: ScriptCountingRedis, success: bool, duration: float, counted: tuple[int, int]
) -> None:
    circuit = VendorCircuit(name, FAST, redis=counting_redis)
    for _ in range(FAST.window_size):
        _call(circuit, success=True)
    counting_redis.scripts_run = 0

    _call(circuit, success=success, duration=duration)

    assert counting_redis.scripts_run == 2
    assert _window(circuit)[1:4] == (FAST.window_size, *counted)


def test_a_failure_recorded_while_a_clean_call_is_in_flight_still_counts(name: str) -> None:
    in_flight, others = VendorCircuit(name, FAST), VendorCircuit(name, FAST)
    for _ in range(FAST.window_size):
        _call(others, success=True)
    assert in_flight.try_acquire()  # permitted into the clean window
    for _ in range(4):
        _call(others, success=False)

    in_flight.record(success=True, duration=0.01)  # left unrecorded

    assert _window(in_flight) == (CircuitState.CLOSED, FAST.window_size, 4, 0,
                                  [b"10"] * 4 + [b"00"] * (FAST.window_size - 4))
    _call(others, success=False)  # 5 of the last 10, as if the success had been recorded
    assert in_flight.snapshot().state == CircuitState.OPEN


def test_forced_closed_and_half_open_calls_are_always_recorded(name: str, counting_redis: ScriptCountingRedis) -> None:
    circuit = VendorCircuit(name, FAST, redis=counting_redis)
    for _ in range(FAST.window_size):
        _call(circuit, success=True)
    circuit.force("closed", by="test")
    counting_redis.scripts_run = 0
    _call(circuit, success=True)
    assert counting_redis.scripts_run == 2

    circuit.force(None, by="test")
    _half_open(circuit)
    for _ in range(FAST.half_open_trials):
        _call(circuit, success=True)  # each trial recorded: all of them close it
    assert circuit.snapshot().state == CircuitState.CLOSED


def test_concurrent_records_from_many_processes_lose_no_counts(name: str) -> None:
    processes, calls = 8, 150
    total = processes * calls
    config = BreakerConfig(window_size=total, minimum_calls=total + 1, failure_rate_threshold=100.0)
    _run_in_processes(_record_many, processes, name, config, calls)
    snapshot = VendorCircuit(name, config).snapshot()
    assert snapshot.state == CircuitState.CLOSED
    assert (snapshot.calls, snapshot.failures) == (total, processes * len(range(0, calls, 3)))

    naive_key = f"beacon:cb:{{{name}}}:naive"
    try:
        _run_in_processes(_naive_increment_many, processes, naive_key, 50)
        naive = int(breaker_redis().get(naive_key) or 0)
    finally:
        breaker_redis().delete(naive_key)
    assert naive < processes * 50  # the read-modify-write that the Lua scripts avoid loses counts


def test_redis_down_fails_open_and_logs_a_rate_limited_warning(
    name: str, dead_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    circuit = VendorCircuit(name, FAST, redis=dead_redis, label="Dead")
    with caplog.at_level(logging.WARNING, logger="notifications.circuit_breaker"):
        for _ in range(5):
            assert circuit.try_acquire()
            circuit.record(success=False, duration=0.01)
            circuit.release()
    warnings = [r for r in caplog.records if "failing open" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].vendor == "Dead"
    with pytest.raises(redis.RedisError):
        circuit.snapshot()
    with pytest.raises(redis.RedisError):
        circuit.force("open", by="alice")


def test_transitions_are_logged_and_counted(name: str, caplog: pytest.LogCaptureFixture) -> None:
    label = f"vendor-{name}"
    circuit = VendorCircuit(name, FAST, label=label)
    with caplog.at_level(logging.INFO, logger="notifications.circuit_breaker"):
        _half_open(circuit)
        assert circuit.try_acquire()
        circuit.record(success=False, duration=0.01)

    messages = [r.getMessage() for r in caplog.records if r.name == "notifications.circuit_breaker"]
    assert messages == [
        f"circuit {label}: closed -> open",
        f"circuit {label}: open -> half_open",
        f"circuit {label}: half_open -> open",
    ]
    opened = {"vendor": label, "from_state": "closed", "to_state": "open"}
    assert REGISTRY.get_sample_value("beacon_circuit_transitions_total", opened) == 1.0
    assert REGISTRY.get_sample_value("beacon_circuit_state", {"vendor": label}) == 2.0
    circuit.reset()
    assert REGISTRY.get_sample_value("beacon_circuit_state", {"vendor": label}) == 0.0


def test_the_shared_client_is_safe_after_fork() -> None:
    client = breaker_redis()
    parent_connection = client.client_id()

    (child_connection,) = _run_in_processes(_client_id_in_child, 1)

    assert child_connection != parent_connection  # the child opened its own connection
    assert client.client_id() == parent_connection  # the parent's socket was left alone
    assert breaker_redis() is client
