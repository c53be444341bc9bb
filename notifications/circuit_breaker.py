"""Per-vendor circuit breaker shared by every worker process, kept in Redis (Resilience4j semantics).

States:
    CLOSED         calls go out; the last `window_size` outcomes are kept. Once at least
                   `minimum_calls` are in the window and the failure rate >= `failure_rate_threshold`
                   or the slow-call rate >= `slow_call_rate_threshold` (percent), -> OPEN.
    OPEN           calls are rejected for `open_seconds`; the next `try_acquire` after that -> HALF_OPEN.
    HALF_OPEN      exactly `half_open_trials` trial permits across all processes. All trials succeed
                   -> CLOSED (window reset); any failed or slow trial -> OPEN. A permit that never
                   reports (process killed) expires after `_permit_ttl()` and is handed out again.
    FORCED_OPEN    operator override: everything is rejected, nothing is recorded.
    FORCED_CLOSED  operator override: everything goes out, nothing is recorded.

Storage (keys share the hash tag `{name}`, so the scripts stay valid on a Redis Cluster):
    beacon:cb:{name}:state    hash: state, epoch, calls/failures/slow (window counters), trial_ok,
                              permit_seq, opened_at/open_until/forced_at (Redis time, microseconds),
                              forced_by
    beacon:cb:{name}:window   list of outcomes, newest first, each "<failed><slow>" ("00", "10", ...)
    beacon:cb:{name}:permits  sorted set of half-open permit ids scored by their expiry

Every read-modify-write is one Lua script, so it is atomic across processes, and every script
reads the clock with Redis `TIME`. `epoch` increases on every transition; a call remembers the
epoch it was permitted in (per thread) and its outcome is dropped if the breaker has moved on
since, so a slow call from the CLOSED period cannot count as a HALF_OPEN trial.

Redis errors make the breaker fail open: `try_acquire()` returns True, `record()` and `release()`
do nothing, and a (rate-limited) warning is logged. `snapshot()`, `force()` and `reset()` raise
`redis.RedisError` instead: an operator must not believe an override took effect when it did not.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import redis

from notifications.circuit_breaker_scripts import LUA_ACQUIRE, LUA_FORCE, LUA_RECORD, LUA_RELEASE
from notifications.metrics import CIRCUIT_STATE, CIRCUIT_TRANSITIONS
from notifications.redis_client import breaker_redis, warn_redis_unavailable

if TYPE_CHECKING:
    from redis.commands.core import Script

logger = logging.getLogger(__name__)

# Prefix of every breaker key; keeps breakers apart from the broker and other data in REDIS_URL.
KEY_PREFIX = "beacon:cb"
# Redis TIME and the stored timestamps are in microseconds (integers stay exact in Lua doubles).
MICROSECONDS = 1_000_000


@dataclass(frozen=True)
class BreakerConfig:
    """Tunables of one breaker (Resilience4j names). Processes sharing a breaker should agree."""

    # How many of the most recent call outcomes the failure and slow-call rates are computed over.
    window_size: int = 20
    # Below this many outcomes in the window the rates are too noisy to open the circuit.
    minimum_calls: int = 10
    # Percentage of failed calls in the window at or above which the circuit opens.
    failure_rate_threshold: float = 50.0
    # Seconds after which a call counts as slow: a vendor that answers too late is degraded too.
    slow_call_duration: float = 5.0
    # Percentage of slow calls in the window at or above which the circuit opens.
    slow_call_rate_threshold: float = 100.0
    # Seconds an open circuit rejects calls before letting trial calls probe the vendor again.
    open_seconds: float = 30.0
    # Trial calls allowed in half-open (across all processes); all must succeed to close.
    half_open_trials: int = 3

    def __post_init__(self) -> None:
        if self.window_size < 1 or self.minimum_calls < 1 or self.half_open_trials < 1:
            raise ValueError("window_size, minimum_calls and half_open_trials must be >= 1")
        if not (0 < self.failure_rate_threshold <= 100 and 0 < self.slow_call_rate_threshold <= 100):
            raise ValueError("rate thresholds are percentages in (0, 100]")
        if self.slow_call_duration <= 0 or self.open_seconds <= 0:
            raise ValueError("slow_call_duration and open_seconds must be > 0")


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"


# Value of the beacon_circuit_state gauge per state (forced states count as what they do).
STATE_GAUGE_VALUES: dict[CircuitState, int] = {
    CircuitState.CLOSED: 0,
    CircuitState.HALF_OPEN: 1,
    CircuitState.OPEN: 2,
    CircuitState.FORCED_OPEN: 2,
    CircuitState.FORCED_CLOSED: 0,
}


@dataclass(frozen=True)
class CircuitSnapshot:
    """The breaker as stored in Redis at one instant; times are Unix seconds (Redis clock)."""

    state: CircuitState
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float
    opened_at: float | None
    open_until: float | None
    forced_by: str | None
    forced_at: float | None


@dataclass(frozen=True)
class _Permit:
    """What a permitted call remembers until it reports: the epoch and the half-open permit id."""

    epoch: int
    permit_id: str
    # Permitted while closed with a full window of fast successes (LUA_ACQUIRE): a fast success
    # then needs no record.
    clean: bool = False


def _permit_ttl(config: BreakerConfig) -> float:
    """Seconds a half-open trial permit lives without a report before it is handed out again.

    A trial still running after slow_call_duration will count as slow (and reopen) anyway, and
    after open_seconds an open circuit would have retried anyway; waiting longer only wedges it.
    """
    return max(config.open_seconds, config.slow_call_duration)


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _seconds(value: Any) -> float | None:
    return None if value is None else int(value) / MICROSECONDS


class VendorCircuit:
    """One vendor's breaker. Cheap to construct; all state lives in Redis, shared by processes.

    A call goes `try_acquire()` -> (call the vendor) -> `record(...)`, or `release()` if the call
    was not made after all. The permit is remembered per thread and per instance, so a thread
    must not interleave two calls on one instance (use one instance per concurrent call instead).
    """

    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        *,
        redis: redis.Redis | None = None,
        label: str | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.label = label or name
        self._redis = redis
        self._scripts: dict[str, Script] = {}
        self._scripts_client: redis.Redis | None = None
        self._local = threading.local()
        prefix = f"{KEY_PREFIX}:{{{name}}}"
        self.keys: list[str] = [f"{prefix}:state", f"{prefix}:window", f"{prefix}:permits"]

    def try_acquire(self) -> bool:
        """May a call go out now? In half-open this takes one of the trial permits.

        Never raises for Redis errors: returns True (fail open) and logs a warning.
        """
        self._local.permit = None
        cfg = self.config
        args = [
            int(cfg.open_seconds * MICROSECONDS),
            cfg.half_open_trials,
            int(_permit_ttl(cfg) * MICROSECONDS),
            cfg.window_size,
        ]
        try:
            allowed, epoch, permit_id, from_state, to_state, state, clean = self._run("acquire", args)
        except redis.RedisError as exc:
            warn_redis_unavailable(logger, "circuit breaker", exc, vendor=self.label, circuit=self.name)
            return True
        self._observe(from_state, to_state, state)
        if allowed:
            self._local.permit = _Permit(epoch=int(epoch), permit_id=_str(permit_id), clean=bool(clean))
        return bool(allowed)

    def record(self, *, success: bool, duration: float) -> None:
        """Report the outcome of a call; `duration` in seconds (slow if > slow_call_duration).

        Counts only if the breaker is still in the state the call was permitted in. Without a
        preceding `try_acquire()` on this thread the outcome counts in CLOSED only (never as a
        half-open trial). Redis errors are logged (rate-limited) and swallowed.

        A fast success permitted into a clean window (closed, full of fast successes) is not sent
        to Redis: it would replace a fast success by another. The one difference: a failure that
        another call records in between stays in the window for the calls left unrecorded, so
        the breaker errs towards opening, by at most the calls in flight.
        """
        permit: _Permit | None = getattr(self._local, "permit", None)
        self._local.permit = None
        cfg = self.config
        slow = duration > cfg.slow_call_duration
        if permit is not None and permit.clean and success and not slow:
            return
        args = [
            "" if permit is None else permit.epoch,
            "" if permit is None else permit.permit_id,
            0 if success else 1,
            1 if slow else 0,
            cfg.window_size,
            cfg.minimum_calls,
            cfg.failure_rate_threshold,
            cfg.slow_call_rate_threshold,
            int(cfg.open_seconds * MICROSECONDS),
            cfg.half_open_trials,
        ]
        try:
            _counted, _epoch, from_state, to_state, state = self._run("record", args)
        except redis.RedisError as exc:
            warn_redis_unavailable(logger, "circuit breaker", exc, vendor=self.label, circuit=self.name)
            return
        self._observe(from_state, to_state, state)

    def release(self) -> None:
        """Give back the permit of a call that was not made (no outcome is recorded).

        Safe to call twice or without a permit. Redis errors are logged (rate-limited) and
        swallowed; an unreturned half-open permit expires on its own.
        """
        permit: _Permit | None = getattr(self._local, "permit", None)
        self._local.permit = None
        if permit is None or not permit.permit_id:
            return
        try:
            self._run("release", [permit.epoch, permit.permit_id])
        except redis.RedisError as exc:
            warn_redis_unavailable(logger, "circuit breaker", exc, vendor=self.label, circuit=self.name)

    def snapshot(self) -> CircuitSnapshot:
        """Read the shared state (one HMGET, so consistent). Raises `redis.RedisError`."""
        fields = ("state", "calls", "failures", "slow", "opened_at", "open_until", "forced_by", "forced_at")
        values = dict(zip(fields, self._client().hmget(self.keys[0], fields), strict=True))
        state = CircuitState(_str(values["state"] or "closed"))
        calls, failures = int(values["calls"] or 0), int(values["failures"] or 0)
        CIRCUIT_STATE.labels(vendor=self.label).set(STATE_GAUGE_VALUES[state])
        return CircuitSnapshot(
            state=state,
            calls=calls,
            failures=failures,
            slow_calls=int(values["slow"] or 0),
            failure_rate=100.0 * failures / calls if calls else 0.0,
            opened_at=_seconds(values["opened_at"]),
            open_until=_seconds(values["open_until"]),
            forced_by=None if values["forced_by"] is None else _str(values["forced_by"]),
            forced_at=_seconds(values["forced_at"]),
        )

    def force(self, state: str | None, *, by: str) -> None:
        """Operator override: "open" rejects every call, "closed" allows every call, None returns
        to automatic operation (CLOSED, window reset). Idempotent. Raises `redis.RedisError`.
        """
        targets = {"open": CircuitState.FORCED_OPEN, "closed": CircuitState.FORCED_CLOSED, None: CircuitState.CLOSED}
        if state not in targets:
            raise ValueError(f"force() takes 'open', 'closed' or None, not {state!r}")
        from_state, to_state = self._run("force", [targets[state].value, by])
        self._observe(from_state, to_state, to_state, by=by)

    def reset(self) -> None:
        """Back to CLOSED with an empty window, clearing any operator override. Raises `redis.RedisError`."""
        from_state, to_state = self._run("force", [CircuitState.CLOSED.value, ""])
        self._observe(from_state, to_state, to_state)

    def _client(self) -> redis.Redis:
        return self._redis if self._redis is not None else breaker_redis()

    def _run(self, script: str, args: list[Any]) -> list[Any]:
        client = self._client()
        if self._scripts_client is not client:
            self._scripts = {
                "acquire": client.register_script(LUA_ACQUIRE),
                "record": client.register_script(LUA_RECORD),
                "release": client.register_script(LUA_RELEASE),
                "force": client.register_script(LUA_FORCE),
            }
            self._scripts_client = client
        return self._scripts[script](keys=self.keys, args=args)

    def _observe(self, from_state: Any, to_state: Any, state: Any, *, by: str | None = None) -> None:
        """Log and count a transition the script reported; keep the state gauge current."""
        current = CircuitState(_str(state))
        CIRCUIT_STATE.labels(vendor=self.label).set(STATE_GAUGE_VALUES[current])
        old, new = _str(from_state), _str(to_state)
        if not old or old == new:
            return
        CIRCUIT_TRANSITIONS.labels(vendor=self.label, from_state=old, to_state=new).inc()
        logger.info(
            "circuit %s: %s -> %s",
            self.label,
            old,
            new,
            extra={"vendor": self.label, "circuit": self.name, "from_state": old, "to_state": new, "forced_by": by},
        )
