"""Reads for the operator's admin: vendor health, the overview page's numbers, template coverage.

Every function here is a read (a selector); the admin views only arrange what these return.
Redis-backed numbers (circuits, queue depth) come back as None when Redis cannot answer, so a
page that shows them still renders during a Redis outage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.db.models import Aggregate, Count, FloatField, Q
from django.utils import timezone

from foundation.broker import amqp_queue_depths, broker_is_amqp
from notifications import metrics
from notifications.circuit_breaker import CircuitSnapshot
from notifications.events import CHECKOUT_OUTCOME_BY_EVENT
from notifications.models import (
    AttemptOutcome,
    DeliveryAttempt,
    Notification,
    NotificationTemplate,
    NotificationTrigger,
    Vendor,
)
from notifications.routing import vendor_circuit
from notifications.template_cache import locale_chain, template_cache_stats_recent

logger = logging.getLogger(__name__)

# The window the operator's "right now" numbers are computed over.
RECENT_WINDOW = timedelta(hours=1)
# Celery queues of the project (config/settings.py CELERY_TASK_ROUTES + the default queue).
CELERY_QUEUES = ("default", "email", "sms")
# Seconds an overview page waits for Redis before it says "unavailable".
REDIS_TIMEOUT_SECONDS = 0.5
# How far back trigger locales are looked at when listing which locales fall back.
SEEN_LOCALES_WINDOW = timedelta(days=7)

# Attempts that reached a vendor (skips for an open circuit or a spent rate limit did not).
VENDOR_CALL = ~Q(outcome__in=[AttemptOutcome.SKIPPED_CIRCUIT_OPEN, AttemptOutcome.RATE_LIMITED, ""])


class Median(Aggregate):
    """PostgreSQL's ordered-set median (FILTER works with it like with any aggregate)."""

    function = "percentile_cont"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


@dataclass(frozen=True)
class VendorStats:
    calls: int
    sent: int
    median_ms: float | None

    @property
    def success_rate(self) -> float | None:
        return 100.0 * self.sent / self.calls if self.calls else None


def vendor_stats(*, since: datetime | None = None) -> dict[int, VendorStats]:
    """Vendor id -> calls, successes and median call latency since `since` (default: last hour).

    One grouped query for every vendor; a vendor without calls is absent from the result.
    """
    since = since or timezone.now() - RECENT_WINDOW
    rows = (
        DeliveryAttempt.objects.filter(VENDOR_CALL, started_at__gte=since, vendor__isnull=False)
        .values("vendor_id")
        .annotate(
            calls=Count("id"),
            sent=Count("id", filter=Q(outcome=AttemptOutcome.SENT)),
            median_ms=Median("duration_ms"),
        )
        .order_by()
    )
    return {row["vendor_id"]: VendorStats(row["calls"], row["sent"], row["median_ms"]) for row in rows}


def channel_stats(*, since: datetime | None = None) -> dict[str, VendorStats]:
    """Channel -> vendor calls, successes and median latency since `since` (default: last hour)."""
    since = since or timezone.now() - RECENT_WINDOW
    rows = (
        DeliveryAttempt.objects.filter(VENDOR_CALL, started_at__gte=since, vendor__isnull=False)
        .values("vendor__channel")
        .annotate(
            calls=Count("id"),
            sent=Count("id", filter=Q(outcome=AttemptOutcome.SENT)),
            median_ms=Median("duration_ms"),
        )
        .order_by()
    )
    return {row["vendor__channel"]: VendorStats(row["calls"], row["sent"], row["median_ms"]) for row in rows}


def circuit_label(snapshot: CircuitSnapshot | None) -> str:
    """The circuit for people: "closed", "open since 21:50:03 UTC", "forced open by admin at
    2026-12-06 21:50:03 UTC"; "unavailable" when Redis did not answer."""
    if snapshot is None:
        return "unavailable"
    state = snapshot.state.replace("_", " ")
    if snapshot.forced_by is not None or snapshot.forced_at is not None:
        by = f" by {snapshot.forced_by}" if snapshot.forced_by else ""
        return f"{state}{by} at {_utc(snapshot.forced_at)}" if snapshot.forced_at else f"{state}{by}"
    if snapshot.state in ("open", "half_open") and snapshot.opened_at:
        return f"{state} since {_utc(snapshot.opened_at)}"
    return state


def _utc(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def circuit_snapshot(vendor: Vendor) -> CircuitSnapshot | None:
    """The vendor's breaker as stored in Redis, or None when Redis cannot answer."""
    try:
        return vendor_circuit(vendor).snapshot()
    except redis.RedisError as exc:
        logger.warning("circuit state unavailable for vendor %s: %s", vendor.pk, type(exc).__name__)
        return None


def queue_depths() -> dict[str, int | None]:
    """Queue name -> messages waiting in the Celery broker (None: the broker did not answer)."""
    if broker_is_amqp(settings.CELERY_BROKER_URL):
        try:
            return amqp_queue_depths(settings.CELERY_BROKER_URL, list(CELERY_QUEUES), timeout=REDIS_TIMEOUT_SECONDS)
        except Exception as exc:  # no node answered
            logger.warning("queue depth unavailable: %s", type(exc).__name__)
            return dict.fromkeys(CELERY_QUEUES)
    client = redis.Redis.from_url(
        settings.CELERY_BROKER_URL,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
    )
    try:
        pipe = client.pipeline(transaction=False)
        for queue in CELERY_QUEUES:
            pipe.llen(queue)
        return dict(zip(CELERY_QUEUES, pipe.execute(), strict=True))
    except redis.RedisError as exc:
        logger.warning("queue depth unavailable: %s", type(exc).__name__)
        return dict.fromkeys(CELERY_QUEUES)
    finally:
        client.close()


@dataclass(frozen=True)
class CacheStats:
    hits: float
    misses: float
    # Where the numbers come from, shown on the page ("this process" until counters are shared).
    scope: str

    @property
    def hit_ratio(self) -> float | None:
        total = self.hits + self.misses
        return 100.0 * self.hits / total if total else None


def checkouts_by_outcome(*, since: datetime) -> dict[str, int]:
    rows = (
        NotificationTrigger.objects.filter(created_at__gte=since, event_type__in=CHECKOUT_OUTCOME_BY_EVENT)
        .values_list("event_type")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {CHECKOUT_OUTCOME_BY_EVENT[event_type]: n for event_type, n in rows}


def template_cache_stats() -> CacheStats:
    """Template cache hits and misses of every process over the last one to two hours (shared
    counters in Redis); this process's own counter if Redis cannot be read."""
    try:
        hits, misses = template_cache_stats_recent()
        return CacheStats(hits=hits, misses=misses, scope="all processes, last 1-2 h")
    except Exception:
        logger.warning("shared template cache stats unavailable; showing this process's")
    values = {"hit": 0.0, "miss": 0.0}
    for family in metrics.TEMPLATE_CACHE_REQUESTS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("result") in values:
                values[sample.labels["result"]] += sample.value
    return CacheStats(hits=values["hit"], misses=values["miss"], scope="this process")


def overview(*, now: datetime | None = None) -> dict[str, Any]:
    """Everything the overview page shows: the numbers an operator checks first in an incident."""
    now = now or timezone.now()
    since = now - RECENT_WINDOW
    vendors = list(Vendor.objects.order_by("channel", "priority", "id"))
    stats = vendor_stats(since=since)
    oldest = (
        NotificationTrigger.objects.filter(dispatched_at__isnull=True, dead_at__isnull=True)
        .order_by("created_at").values_list("created_at", flat=True).first()
    )
    return {
        "since": since,
        "checkouts": checkouts_by_outcome(since=since),
        "notifications": dict(
            Notification.objects.filter(created_at__gte=since).values_list("status").annotate(n=Count("id")).order_by()
        ),
        "channels": channel_stats(since=since),
        "vendors": [
            (vendor, stats.get(vendor.pk), snapshot, circuit_label(snapshot))
            for vendor in vendors
            for snapshot in [circuit_snapshot(vendor)]
        ],
        "queues": queue_depths(),
        "oldest_undispatched_age": (now - oldest) if oldest else None,
        "dead_triggers": NotificationTrigger.objects.filter(dead_at__isnull=False, dispatched_at__isnull=True).count(),
        "template_cache": template_cache_stats(),
    }


def template_coverage() -> list[dict[str, Any]]:
    """For every (event, channel): which active template serves each known locale.

    Known locales are those of active templates plus those triggers used lately, so an operator
    sees e.g. `pt-BR -> pt (falls back)` or `de -> en (falls back)` or `xx -> none`.
    """
    active = list(NotificationTemplate.objects.filter(is_active=True).order_by("event_type", "channel", "locale"))
    seen = NotificationTrigger.objects.filter(created_at__gte=timezone.now() - SEEN_LOCALES_WINDOW)
    locales = sorted({t.locale for t in active} | set(seen.values_list("locale", flat=True).distinct()))
    by_key: dict[tuple[str, str], dict[str, NotificationTemplate]] = {}
    for template in active:
        by_key.setdefault((template.event_type, template.channel), {})[template.locale] = template
    rows = []
    for (event_type, channel), templates in by_key.items():
        served = []
        for locale in locales:
            template = next((templates[c] for c in locale_chain(locale) if c in templates), None)
            served.append({"locale": locale, "template": template, "falls_back": template is not None and template.locale != locale})
        rows.append({"event_type": event_type, "channel": channel, "locales": served})
    return rows
