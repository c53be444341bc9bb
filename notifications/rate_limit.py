"""Global per-vendor send-rate limit shared by every worker process (GCRA in one Lua script).

GCRA keeps one number per vendor, the theoretical arrival time (TAT) of the next permit, in
`beacon:rl:{name}:tat` (microseconds, Redis clock). A request at `now` is allowed when
`max(TAT, now) + interval - burst * interval <= now`, and then moves the TAT one interval on.
So `burst` permits are available at once after an idle period, and afterwards one per
`1 / rate_per_second` seconds; a denied request learns exactly when the next permit frees up.
The check and the update are one script, hence atomic across processes; the key expires once
the bucket is full again, so idle vendors cost nothing.

Redis errors make the limiter fail open (allowed, with a rate-limited warning in the log).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis

from notifications.redis_client import breaker_redis, warn_redis_unavailable

if TYPE_CHECKING:
    from redis.commands.core import Script

logger = logging.getLogger(__name__)

# Prefix of every rate-limit key; keeps them apart from breakers and the broker in REDIS_URL.
KEY_PREFIX = "beacon:rl"
# GCRA works in integer microseconds so values stay exact inside Lua's doubles.
MICROSECONDS = 1_000_000

# ARGV: interval_us, burst. Returns {allowed 0/1, retry_after_us}.
_LUA_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then return {0, string.format('%d', allow_at - now)} end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', math.ceil((new_tat - now) / 1000) + 1))
return {1, '0'}
"""


@dataclass(frozen=True)
class RateDecision:
    """Whether a send may go out now; if not, `retry_after` seconds until a permit is free."""

    allowed: bool
    retry_after: float


class VendorRateLimiter:
    """At most `rate_per_second` sends per second for one vendor, across all processes.

    `burst` (default: one second's worth, at least 1) permits may go out at once after an idle
    period. `rate_per_second <= 0` means unlimited: `try_acquire()` allows without calling Redis.
    """

    def __init__(
        self,
        name: str,
        rate_per_second: float,
        burst: int | None = None,
        *,
        redis: redis.Redis | None = None,
    ) -> None:
        if burst is not None and burst < 1:
            raise ValueError("burst must be >= 1")
        self.name = name
        self.rate_per_second = rate_per_second
        self.burst = burst if burst is not None else max(1, math.floor(rate_per_second))
        self.key = f"{KEY_PREFIX}:{{{name}}}:tat"
        self._redis = redis
        self._script: Script | None = None
        self._script_client: redis.Redis | None = None

    @property
    def unlimited(self) -> bool:
        return self.rate_per_second <= 0

    def try_acquire(self) -> RateDecision:
        """Take one permit if one is free. A denied call takes nothing (callers may retry freely).

        Never raises for Redis errors: allows (fail open) and logs a rate-limited warning.
        """
        if self.unlimited:
            return RateDecision(allowed=True, retry_after=0.0)
        interval_us = max(1, round(MICROSECONDS / self.rate_per_second))
        try:
            allowed, retry_after_us = self._gcra()(keys=[self.key], args=[interval_us, self.burst])
        except redis.RedisError as exc:
            warn_redis_unavailable(logger, "rate limiter", exc, rate_limiter=self.name)
            return RateDecision(allowed=True, retry_after=0.0)
        return RateDecision(allowed=bool(allowed), retry_after=int(retry_after_us) / MICROSECONDS)

    def _gcra(self) -> Script:
        client = self._redis if self._redis is not None else breaker_redis()
        if self._script is None or self._script_client is not client:
            self._script = client.register_script(_LUA_GCRA)
            self._script_client = client
        return self._script
