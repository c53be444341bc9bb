"""The safety net: finds notifications whose queued message was lost and queues them again.

A retry message can be lost (the broker was down when Celery tried to publish it), a send
message can be lost (Redis lost data), a worker can die with its lease held. The database
says what is due; this queues it. Each notification is re-queued at most once per
NOTIFICATION_SWEEP_STALE_SECONDS (setting, default 60), so a long queue is not flooded with copies.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from notifications.dispatch import notification_enqueue
from notifications.models import Notification, NotificationStatus

logger = logging.getLogger(__name__)

SWEEP_BATCH = 1000


def notifications_sweep(*, stale_seconds: float | None = None) -> int:
    """Queue every notification that is due but forgotten; returns how many were queued.

    A notification untouched for `stale_seconds` (default: NOTIFICATION_SWEEP_STALE_SECONDS)
    while due is taken to have lost its queued message.
    """
    if stale_seconds is None:
        stale_seconds = settings.NOTIFICATION_SWEEP_STALE_SECONDS
    now = timezone.now()
    stale = now - timedelta(seconds=stale_seconds)
    forgotten = (
        Q(status=NotificationStatus.PENDING, updated_at__lt=stale)
        | Q(status=NotificationStatus.RETRYING, next_attempt_at__lt=stale, updated_at__lt=stale)
        | Q(status=NotificationStatus.SENDING, lease_until__lt=now, updated_at__lt=stale)
    )
    rows = list(Notification.objects.filter(forgotten).order_by("id").values_list("pk", "channel")[:SWEEP_BATCH])
    if not rows:
        return 0
    Notification.objects.filter(pk__in=[pk for pk, _ in rows]).update(updated_at=now)
    queued = sum(notification_enqueue(notification_id=pk, channel=channel) for pk, channel in rows)
    logger.info("sweeper re-queued %d notifications", queued)
    return queued
