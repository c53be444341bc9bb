"""The overview's last hour, minute by minute: checkouts, deliveries by channel, vendor latency.

Reads only (selectors), one grouped query per chart. Every series has one value per minute,
oldest first, for the minutes `minutes_of_last_hour` names; a minute without data is 0 for
counts and None (a gap) for latencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count
from django.db.models.functions import TruncMinute

from notifications.events import CHECKOUT_OUTCOME_BY_EVENT
from notifications.models import DeliveryAttempt, Notification, NotificationStatus, NotificationTrigger
from notifications.overview import VENDOR_CALL, Median

# One bucket per minute over the hour the overview shows.
MINUTES_SHOWN = 60


@dataclass(frozen=True)
class Series:
    """Named lines of one chart over `minutes` (the buckets' start times, oldest first)."""

    minutes: list[datetime]
    lines: dict[str, list[float | None]]


def minutes_of_last_hour(now: datetime) -> list[datetime]:
    """The starts of the last MINUTES_SHOWN minutes, the current (partial) one last."""
    current = now.replace(second=0, microsecond=0)
    return [current - timedelta(minutes=offset) for offset in range(MINUTES_SHOWN - 1, -1, -1)]


def _series(minutes: list[datetime], rows: list[tuple[datetime, str, float | None]], names: list[str], empty: float | None) -> Series:
    index = {minute: position for position, minute in enumerate(minutes)}
    lines: dict[str, list[float | None]] = {name: [empty] * len(minutes) for name in names}
    for minute, name, value in rows:
        if minute in index and name in lines:
            lines[name][index[minute]] = value
    return Series(minutes=minutes, lines=lines)


def checkouts_per_minute(*, now: datetime) -> Series:
    """Checkouts by outcome (paid, payment_failed), counted by their trigger (one each)."""
    minutes = minutes_of_last_hour(now)
    rows = (
        NotificationTrigger.objects.filter(created_at__gte=minutes[0], event_type__in=CHECKOUT_OUTCOME_BY_EVENT)
        .annotate(minute=TruncMinute("created_at"))
        .values_list("minute", "event_type")
        .annotate(n=Count("id"))
        .order_by()
    )
    outcomes = list(dict.fromkeys(CHECKOUT_OUTCOME_BY_EVENT.values()))
    return _series(minutes, [(minute, CHECKOUT_OUTCOME_BY_EVENT[event], n) for minute, event, n in rows], outcomes, 0)


def deliveries_per_minute(*, now: datetime, channels: list[str]) -> Series:
    """Notifications a vendor accepted, by channel, in the minute they were sent."""
    minutes = minutes_of_last_hour(now)
    rows = (
        Notification.objects.filter(status=NotificationStatus.SENT, sent_at__gte=minutes[0])
        .annotate(minute=TruncMinute("sent_at"))
        .values_list("minute", "channel")
        .annotate(n=Count("id"))
        .order_by()
    )
    return _series(minutes, list(rows), channels, 0)


def vendor_latency_per_minute(*, now: datetime, vendors: list[str]) -> Series:
    """Median vendor call duration (ms) per vendor and minute; None where it made no call."""
    minutes = minutes_of_last_hour(now)
    rows = (
        DeliveryAttempt.objects.filter(VENDOR_CALL, started_at__gte=minutes[0], vendor__isnull=False)
        .annotate(minute=TruncMinute("started_at"))
        .values_list("minute", "vendor__name")
        .annotate(median_ms=Median("duration_ms"))
        .order_by()
    )
    return _series(minutes, list(rows), vendors, None)
