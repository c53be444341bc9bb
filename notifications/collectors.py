"""Scrape-time gauges of the outbox and the dead letters, read from the database.

A counter in one process cannot say "how old is the oldest trigger nobody dispatched yet":
that is a property of the table. These collectors run when /metrics is scraped (the web
exposes them, once per scrape, not per process), each with one indexed query under a short
statement timeout; a failing query skips its samples instead of failing the scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from notifications.models import Notification, NotificationStatus, NotificationTrigger

logger = logging.getLogger(__name__)

# A scrape must not queue behind a slow database: each query gives up after this (ms).
SCRAPE_QUERY_TIMEOUT_MS = 1000


class OutboxCollector(Collector):
    """`beacon_outbox_oldest_undispatched_age_seconds`, `beacon_outbox_undispatched_triggers`
    (dead triggers left out), `beacon_outbox_dead_triggers` and `beacon_notifications_dead`
    (current dead letters)."""

    def collect(self) -> Iterator[Metric]:
        try:
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    with connection.cursor() as cursor:
                        cursor.execute(f"SET LOCAL statement_timeout = {int(SCRAPE_QUERY_TIMEOUT_MS)}")
                # The partial index trigger_undispatched_idx holds only undispatched rows.
                outbox = NotificationTrigger.objects.filter(dispatched_at__isnull=True, dead_at__isnull=True).aggregate(
                    count=Count("id"), oldest=Min("created_at")
                )
                # The partial index trigger_dead_idx holds only dead triggers.
                dead_triggers = NotificationTrigger.objects.filter(dead_at__isnull=False, dispatched_at__isnull=True).count()
                dead = Notification.objects.filter(status=NotificationStatus.DEAD).count()
        except DatabaseError as exc:
            logger.warning("outbox metrics skipped: %s", type(exc).__name__)
            return
        oldest = outbox["oldest"]
        age = max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else 0.0
        yield GaugeMetricFamily(
            "beacon_outbox_oldest_undispatched_age_seconds",
            "Age of the oldest notification trigger not dispatched yet (0 when none waits).",
            value=age,
        )
        yield GaugeMetricFamily(
            "beacon_outbox_undispatched_triggers", "Notification triggers not dispatched yet.", value=outbox["count"]
        )
        yield GaugeMetricFamily(
            "beacon_outbox_dead_triggers",
            "Notification triggers given up after repeated dispatch failures, waiting for an operator.",
            value=dead_triggers,
        )
        yield GaugeMetricFamily(
            "beacon_notifications_dead", "Notifications currently in the dead-letter state (status dead).", value=dead
        )
