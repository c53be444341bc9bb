"""The Redis client shared by the circuit breakers and rate limiters, and their fail-open warning.

`breaker_redis()` hands out one `redis.Redis` per process, built lazily from `settings.REDIS_URL`
with short timeouts and no retries: the breaker sits in front of every send, so a dead Redis must
cost a send a fraction of a second, not the default retry ladder.

Fork safety (Celery prefork): a client created in the parent is inherited by the children, but
redis-py's `ConnectionPool` remembers the pid that created it and, on first use in a child,
drops the inherited connections and opens its own (`ConnectionPool._checkpid`). The parent's
sockets are never written to from a child. `tests/test_circuit_breaker.py` checks this.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

# Used when settings do not define REDIS_SOCKET_TIMEOUT: a breaker check must stay cheap even when
# Redis hangs.
DEFAULT_SOCKET_TIMEOUT = 0.25
# Ping an idle pooled connection before reuse after this many seconds, so a connection dropped by a
# Redis restart or a NAT timeout is replaced instead of failing the next call.
HEALTH_CHECK_INTERVAL = 15
# No retries: each retry multiplies what a dead Redis costs a send, and the callers fail open.
REDIS_RETRIES = 0
# At most one "Redis unavailable" warning per source per process in this many seconds, so an
# outage does not flood the logs with one line per send.
REDIS_WARNING_INTERVAL = 5.0

_client: redis.Redis | None = None
_client_lock = threading.Lock()

_last_warning: dict[str, float] = {}
_warning_lock = threading.Lock()


def breaker_redis() -> redis.Redis:
    """Return the process-wide client for breaker/rate-limit state (created on first call).

    Never raises for an unreachable Redis (no connection is made here); commands on the client
    raise `redis.RedisError` after at most about `REDIS_SOCKET_TIMEOUT` seconds.
    """
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                timeout = float(getattr(settings, "REDIS_SOCKET_TIMEOUT", DEFAULT_SOCKET_TIMEOUT))
                _client = redis.Redis.from_url(
                    settings.REDIS_URL,
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                    health_check_interval=HEALTH_CHECK_INTERVAL,
                    retry=Retry(NoBackoff(), REDIS_RETRIES),
                )
    return _client


def warn_redis_unavailable(log: logging.Logger, source: str, error: Exception, **extra: object) -> bool:
    """Log that `source` fails open because Redis errored, at most once per interval per source.

    Returns True when the warning was written, False when it was suppressed. Thread-safe.
    """
    now = time.monotonic()
    with _warning_lock:
        last = _last_warning.get(source)
        if last is not None and now - last < REDIS_WARNING_INTERVAL:
            return False
        _last_warning[source] = now
    log.warning(
        "%s: Redis unavailable, failing open: %s",
        source,
        error,
        extra={"source": source, "error": repr(error), **extra},
    )
    return True
