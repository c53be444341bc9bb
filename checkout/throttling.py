"""Per-client request throttling (a sliding one-minute window) and the per-address block after
repeated failed API keys, both in the cache's Redis.

Sliding window counter: each client has a counter per clock minute; a request at a fraction
`f` into the current minute sees `previous * (1 - f) + current`, and is admitted only if that
plus itself stays within the client's rate. A fixed window admitted a full minute's worth at
:59 and another at :00; here the first minute still weighs almost fully on the second. Refused
requests are not counted, so a client that waits as told by Retry-After is served.

One round trip per request: the script also reads the client address's failed-key counter
(checkout/authentication.py), so an address blocked for guessing keys is refused even with a
right key, at no extra cost to the checkout.

If Redis is unavailable the request is allowed: throttling must never take checkout down.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django_redis import get_redis_connection
from redis.commands.core import Script
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from checkout.models import ApiClient
from foundation.trusted_proxies import client_address_or_peer

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
# What a blocked address is told, for a wrong key (checkout/authentication.py) and a right one alike.
BLOCKED_ADDRESS_MESSAGE = "Too many failed API keys from this address."
# The clock, read once per request; a name of its own so tests can stand at a minute's edge.
_clock = time.time

# KEYS: current window, previous window, the address's failed-key counter.
# ARGV: limit, weight of the previous window (1 - elapsed fraction), key TTL, failed-key limit.
# Returns {verdict, current, previous}: verdict 1 admitted, 0 over the rate, -1 address blocked
# (then {-1, seconds left of the block, 0}).
_LUA_SLIDING_WINDOW = """
local failures = tonumber(redis.call('GET', KEYS[3]) or '0')
if failures >= tonumber(ARGV[4]) then return {-1, redis.call('TTL', KEYS[3]), 0} end
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
if previous * tonumber(ARGV[2]) + current + 1 > tonumber(ARGV[1]) then return {0, current, previous} end
current = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, current, previous}
"""
# Bytes, so no client is needed to hash it; run with EVALSHA on the cache's connection.
_SLIDING_WINDOW = Script(None, _LUA_SLIDING_WINDOW.encode())  # type: ignore[arg-type]


def auth_failures_key(address: str) -> str:
    """The cache-namespaced Redis key counting failed API keys from `address`."""
    return cache.make_key(f"auth-failures:{address}")


def sliding_window_wait(*, limit: int, current: int, previous: int, elapsed: float) -> float:
    """Seconds until one more request fits, if none is made meanwhile (for Retry-After)."""
    if current + 1 <= limit and previous > 0:
        # Still this minute: the previous one's weight must shrink to make room.
        fraction_needed = 1 - (limit - current - 1) / previous
        return max(fraction_needed * WINDOW_SECONDS - elapsed, 0.0)
    # This minute is full: next minute, this one's count weighs `current * (1 - f)`.
    fraction_next = max(1 - (limit - 1) / current, 0.0) if current else 0.0
    return WINDOW_SECONDS - elapsed + fraction_next * WINDOW_SECONDS


class ApiClientRateThrottle(BaseThrottle):
    def allow_request(self, request: Request, view: APIView) -> bool:
        client = request.user
        if not isinstance(client, ApiClient):  # no key, or a staff session reading the docs
            return True
        limit = client.rate_limit_per_minute or settings.API_DEFAULT_RATE_PER_MINUTE
        now = _clock()
        window, elapsed = divmod(now, WINDOW_SECONDS)
        window = int(window)
        keys = [
            cache.make_key(f"throttle:{client.pk}:{window}"),
            cache.make_key(f"throttle:{client.pk}:{window - 1}"),
            auth_failures_key(client_address_or_peer(request)),
        ]
        weight = 1 - elapsed / WINDOW_SECONDS
        try:
            verdict, current, previous = _SLIDING_WINDOW(
                keys=keys,
                args=[limit, repr(weight), WINDOW_SECONDS * 2 + 5, settings.API_AUTH_FAILURE_LIMIT],
                client=get_redis_connection("default"),
            )
        except Exception as exc:  # Redis down: fail open, never fail the checkout
            logger.warning("throttle unavailable, allowing request: %s", type(exc).__name__)
            return True
        if verdict == -1:
            # The block's own end, and why: a right key from a blocked address is refused too.
            seconds_left = int(current) if int(current) > 0 else settings.API_AUTH_FAILURE_WINDOW
            raise Throttled(wait=seconds_left, detail=BLOCKED_ADDRESS_MESSAGE)
        self._wait = sliding_window_wait(limit=limit, current=int(current), previous=int(previous), elapsed=elapsed)
        return verdict == 1

    def wait(self) -> float | None:
        wait = getattr(self, "_wait", None)
        return None if wait is None else max(math.ceil(wait), 1)
