"""The safety net: finds notifications whose queued message was lost and queues them again.

A retry message can be lost (the broker was down when Celery tried to publish it), a send
message can be lost (Redis lost data), a worker can die with its lease held. The database
says what is due; this queues it. Each notification is re-queued at most once per
NOTIFICATION_SWEEP_STALE_SECONDS (setting, default 60), so a long queue is not flooded with copies.
"""

from __future__ import annotations

import logging

from django.conf import settings

from notifications.lifecycle import notifications_forgotten_take
from notifications.publisher import notification_enqueue

logger = logging.getLogger(__name__)

SWEEP_BATCH = 1000


def notifications_sweep(*, stale_seconds: float | None = None) -> int:
    """Queue every notification that is due but forgotten; returns how many were queued.

    A notification untouched for `stale_seconds` (default: NOTIFICATION_SWEEP_STALE_SECONDS)
    while due is taken to have lost its queued message (the rule: lifecycle.py).
    """
    if stale_seconds is None:
        stale_seconds = settings.NOTIFICATION_SWEEP_STALE_SECONDS
    rows = notifications_forgotten_take(stale_seconds=stale_seconds, limit=SWEEP_BATCH)
    if not rows:
        return 0
    queued = sum(notification_enqueue(notification_id=pk, channel=channel) for pk, channel in rows)
    logger.info("sweeper re-queued %d notifications", queued)
    return queued
