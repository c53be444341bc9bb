"""The one accessor for active templates: Redis (Django's cache) in front of PostgreSQL.

Key: `tmpl:v1:{event}:{channel}` -> every active locale of that event and channel, so one
GET resolves any locale's fallback chain (pt-BR -> pt -> default). Invalidation happens in
one place (`template_cache_invalidate`, called after a template's save or delete commits).
A cold key is rebuilt by one process holding a short lock while the others wait for it
(no cache-miss storm); TTLs carry jitter so keys do not expire together. If Redis is down
every read goes to the database (django-redis ignores and logs the error).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from notifications import metrics
from notifications.models import NotificationTemplate
from notifications.redis_client import breaker_redis

logger = logging.getLogger(__name__)

CACHE_KEY_VERSION = "v1"
# TTLs vary by this fraction either way, so keys written together do not expire together.
TTL_JITTER = 0.1
# How long the process rebuilding a key may hold its lock (seconds).
REBUILD_LOCK_SECONDS = 5
# How long other processes wait for the rebuilder before reading the database themselves.
REBUILD_WAIT_SECONDS = 1.0
REBUILD_POLL_SECONDS = 0.02
# Hits and misses are also summed across processes in Redis, per hour, for the admin overview;
# each process adds its counts in one pipeline at most this often (seconds).
STATS_FLUSH_SECONDS = 5.0
STATS_KEY_TTL_SECONDS = 3 * 3600

_stats_lock = threading.Lock()
_stats_pending = {"hit": 0, "miss": 0}
_stats_next_flush = 0.0


@dataclass(frozen=True)
class CachedTemplate:
    id: int
    version: int
    locale: str
    subject: str
    body_text: str
    body_html: str

    @property
    def version_tag(self) -> str:
        return f"{self.id}.{self.version}"


def _key(event_type: str, channel: str) -> str:
    return f"tmpl:{CACHE_KEY_VERSION}:{event_type}:{channel}"


def _generation_key(event_type: str, channel: str) -> str:
    return f"tmpl:{CACHE_KEY_VERSION}:{event_type}:{channel}:generation"


def locale_chain(locale: str) -> list[str]:
    """`pt-BR` -> [`pt-BR`, `pt`, default]; duplicates removed, order kept."""
    chain = [locale, locale.split("-")[0], settings.DEFAULT_LOCALE]
    return list(dict.fromkeys(part for part in chain if part))


def _load(event_type: str, channel: str) -> dict[str, dict]:
    rows = NotificationTemplate.objects.filter(event_type=event_type, channel=channel, is_active=True).values(
        "id", "version", "locale", "subject", "body_text", "body_html"
    )
    return {row["locale"]: row for row in rows}


def _ttl() -> int:
    base = settings.TEMPLATE_CACHE_TTL
    return max(1, int(base * random.uniform(1 - TTL_JITTER, 1 + TTL_JITTER)))


def _fresh(found: dict, key: str, generation_key: str) -> dict[str, dict] | None:
    """The templates of a cache entry read together with its generation, if it is current."""
    entry = found.get(key)
    if entry is not None and entry.get("generation") == found.get(generation_key, 0):
        return entry["templates"]
    return None


def _templates_rebuilt(event_type: str, channel: str, *, generation: int) -> dict[str, dict]:
    """A missed entry: rebuilt from the database by the process that takes the rebuild lock,
    while the others wait for it (at most REBUILD_WAIT_SECONDS) rather than all reading the
    database at once. `generation` was read with the missed entry, before any row is."""
    _count("miss")
    key, generation_key = _key(event_type, channel), _generation_key(event_type, channel)
    lock = _try_lock(key)
    if lock is None:
        deadline = time.monotonic() + REBUILD_WAIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(REBUILD_POLL_SECONDS)
            templates = _fresh(cache.get_many([key, generation_key]), key, generation_key)
            if templates is not None:
                return templates
        return _load(event_type, channel)
    try:
        templates = _load(event_type, channel)
        cache.set(key, {"generation": generation, "templates": templates}, timeout=_ttl())
        return templates
    finally:
        _release(lock)


def _try_lock(key: str):
    """Take the rebuild lock without waiting; returns None when another process holds it."""
    try:
        lock = cache.lock(f"{key}:rebuild", timeout=REBUILD_LOCK_SECONDS)
        return lock if lock.acquire(blocking=False) else None
    except Exception as exc:  # Redis down: rebuild ourselves (from the database)
        logger.warning("template cache lock unavailable: %s", type(exc).__name__)
        return _NoLock()


def _release(lock) -> None:
    try:
        lock.release()
    except Exception:  # expired or Redis gone: the lock frees itself by timeout
        logger.debug("template cache lock release failed", exc_info=True)


class _NoLock:
    def release(self) -> None:
        return None


def template_resolve(*, event_type: str, channel: str, locale: str) -> CachedTemplate | None:
    """The active template for this event, channel and locale, following the locale chain."""
    return templates_resolve(event_type=event_type, channels=[channel], locale=locale)[channel]


def templates_resolve(*, event_type: str, channels: list[str], locale: str) -> dict[str, CachedTemplate | None]:
    """`template_resolve` for several channels of one event: one MGET when every entry is
    cached (a trigger's email and SMS, one Redis round trip instead of two).

    Each channel's entry is every active template of the event and channel, by locale.
    Entries carry the generation they were built under; `template_cache_invalidate` bumps the
    generation, so an entry built from rows read before a change (a rebuild racing the
    invalidation) is never served afterwards."""
    keys = {channel: (_key(event_type, channel), _generation_key(event_type, channel)) for channel in channels}
    found = cache.get_many([name for pair in keys.values() for name in pair])
    resolved = {}
    for channel, (key, generation_key) in keys.items():
        templates = _fresh(found, key, generation_key)
        if templates is None:
            templates = _templates_rebuilt(event_type, channel, generation=found.get(generation_key, 0))
        else:
            _count("hit")
        resolved[channel] = _in_locale(templates, locale)
    return resolved


def _in_locale(templates: dict[str, dict], locale: str) -> CachedTemplate | None:
    for candidate in locale_chain(locale):
        row = templates.get(candidate)
        if row is not None:
            return CachedTemplate(**row)
    return None


def template_cache_invalidate(*, event_type: str, channel: str) -> None:
    """Retire the cached templates of one event and channel. Call after the change commits."""
    generation_key = _generation_key(event_type, channel)
    if not cache.add(generation_key, 1, timeout=None):
        try:
            cache.incr(generation_key)
        except ValueError:  # expired between add and incr
            cache.set(generation_key, 1, timeout=None)
    cache.delete(_key(event_type, channel))


def _stats_key(hour: int) -> str:
    # Namespaced like the cache itself, so two deployments (or test runs) sharing a Redis never mix.
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    return f"beacon:template_cache:stats:{prefix}:{hour}"


def _count(result: str) -> None:
    global _stats_next_flush
    metrics.TEMPLATE_CACHE_REQUESTS.labels(result=result).inc()
    now = time.monotonic()
    with _stats_lock:
        _stats_pending[result] += 1
        if now < _stats_next_flush:
            return
        counts = dict(_stats_pending)
        _stats_pending.update(hit=0, miss=0)
        _stats_next_flush = now + STATS_FLUSH_SECONDS
    key = _stats_key(int(time.time() // 3600))
    try:
        pipe = breaker_redis().pipeline(transaction=False)
        for name, count in counts.items():
            pipe.hincrby(key, name, count)
        pipe.expire(key, STATS_KEY_TTL_SECONDS)
        pipe.execute()
    except Exception as exc:  # statistics only: losing a batch is acceptable
        logger.debug("template cache stats not recorded: %s", type(exc).__name__)


def template_cache_stats_recent() -> tuple[int, int]:
    """(hits, misses) of every process over this hour and the last; raises RedisError."""
    hour = int(time.time() // 3600)
    pipe = breaker_redis().pipeline(transaction=False)
    for key in (_stats_key(hour - 1), _stats_key(hour)):
        pipe.hgetall(key)
    hits = misses = 0
    for counts in pipe.execute():
        hits += int(counts.get(b"hit", 0))
        misses += int(counts.get(b"miss", 0))
    return hits, misses
