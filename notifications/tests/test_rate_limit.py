"""VendorRateLimiter against the real Redis (REDIS_URL), including a race between real processes.

Every test uses its own limiter name (uuid) and deletes its key afterwards. No database.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from notifications import redis_client
from notifications.rate_limit import VendorRateLimiter
from notifications.redis_client import breaker_redis

FORK = multiprocessing.get_context("fork")


@pytest.fixture
def name() -> Iterator[str]:
    limiter_name = f"test:{uuid.uuid4().hex}"
    yield limiter_name
    breaker_redis().delete(VendorRateLimiter(limiter_name, 1).key)


@pytest.fixture
def dead_redis() -> redis.Redis:
    """A client for a port nobody listens on, failing within milliseconds."""
    redis_client._last_warning.clear()
    return redis.Redis(
        host="127.0.0.1", port=1, socket_timeout=0.05, socket_connect_timeout=0.05, retry=Retry(NoBackoff(), 0)
    )


def _take_many(barrier: Any, results: Any, name: str, attempts: int) -> None:
    limiter = VendorRateLimiter(name, 0.01, burst=5, redis=redis.Redis.from_url(settings.REDIS_URL))
    barrier.wait()
    results.put(sum(limiter.try_acquire().allowed for _ in range(attempts)))


def test_it_allows_the_burst_at_once_then_denies_with_a_sensible_retry_after(name: str) -> None:
    limiter = VendorRateLimiter(name, rate_per_second=2, burst=3)
    assert all(limiter.try_acquire().allowed for _ in range(3))

    denied = limiter.try_acquire()
    assert not denied.allowed
    assert 0 < denied.retry_after <= 0.5  # one interval at 2/s
    again = limiter.try_acquire()
    assert not again.allowed and again.retry_after <= denied.retry_after  # a denial takes nothing

    time.sleep(denied.retry_after + 0.02)
    assert limiter.try_acquire().allowed
    assert not limiter.try_acquire().allowed


def test_it_defaults_the_burst_to_one_second_of_the_rate(name: str) -> None:
    assert VendorRateLimiter(name, rate_per_second=4).burst == 4
    assert VendorRateLimiter(name, rate_per_second=0.2).burst == 1


def test_after_the_burst_it_allows_the_configured_rate(name: str) -> None:
    rate, burst = 20.0, 1
    limiter = VendorRateLimiter(name, rate_per_second=rate, burst=burst)
    allowed = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < 1.0:
        allowed += limiter.try_acquire().allowed
        time.sleep(0.002)
    # Never more than the rate allows; a loaded machine may poll less often, so the floor is loose.
    assert allowed <= burst + rate * elapsed + 1
    assert allowed >= rate * elapsed / 2


def test_the_limit_is_shared_across_processes(name: str) -> None:
    processes = 6
    barrier, results = FORK.Barrier(processes), FORK.Queue()
    workers = [FORK.Process(target=_take_many, args=(barrier, results, name, 20)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    allowed = sum(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert allowed == 5  # the burst, once, across all processes (the next permit is 100 s away)


def test_the_key_expires_once_the_bucket_is_full_again(name: str) -> None:
    limiter = VendorRateLimiter(name, rate_per_second=10, burst=2)
    assert limiter.try_acquire().allowed
    assert 0 < breaker_redis().pttl(limiter.key) <= 200


def test_unlimited_makes_no_redis_call(dead_redis: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    limiter = VendorRateLimiter("unused", rate_per_second=0, redis=dead_redis)
    with caplog.at_level(logging.WARNING, logger="notifications.rate_limit"):
        decisions = [limiter.try_acquire() for _ in range(100)]
    assert all(d.allowed and d.retry_after == 0 for d in decisions)
    assert [r for r in caplog.records if r.name == "notifications.rate_limit"] == []  # Redis never asked
    assert limiter.unlimited


def test_redis_down_fails_open_and_logs_a_rate_limited_warning(
    name: str, dead_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = VendorRateLimiter(name, rate_per_second=1, burst=1, redis=dead_redis)
    with caplog.at_level(logging.WARNING, logger="notifications.rate_limit"):
        assert all(limiter.try_acquire().allowed for _ in range(5))
    warnings = [r for r in caplog.records if "failing open" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].rate_limiter == name
