"""Turning a trigger into notifications, and queueing their sends."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from notifications import metrics
from notifications.models import Channel, Notification, NotificationStatus, NotificationTrigger
from notifications.template_cache import template_resolve

logger = logging.getLogger(__name__)

SEND_TASKS = {
    Channel.EMAIL: "notifications.tasks.notification_send_email",
    Channel.SMS: "notifications.tasks.notification_send_sms",
}


def trigger_dispatch(*, trigger_id: int) -> list[int]:
    """Create the trigger's notifications and queue a send for each still pending.

    Idempotent: dispatching again creates nothing new and sends nothing twice (a send claims
    its notification before calling a vendor). Returns the ids of the notifications queued.
    """
    pending = trigger_dispatch_create(trigger_id=trigger_id)
    for notification_id, channel in pending.items():
        notification_enqueue(notification_id=notification_id, channel=channel)
    return list(pending)


def trigger_dispatch_create(*, trigger_id: int) -> dict[int, str]:
    """Create the trigger's notifications; return the pending ones (id -> channel).

    One notification per (trigger, channel, recipient) for each channel that has an address
    and an active template; marks the trigger dispatched.
    """
    trigger = NotificationTrigger.objects.filter(pk=trigger_id).first()
    if trigger is None:
        return {}
    wanted = [
        Notification(
            trigger=trigger,
            event_type=trigger.event_type,
            channel=channel,
            recipient=address,
            locale=trigger.locale,
            request_id=trigger.request_id,
        )
        for channel, address in trigger.recipients.items()
        if channel in Channel.values
        and address
        and template_resolve(event_type=trigger.event_type, channel=channel, locale=trigger.locale) is not None
    ]
    with transaction.atomic():
        Notification.objects.bulk_create(wanted, ignore_conflicts=True)
        first_dispatch = NotificationTrigger.objects.filter(pk=trigger.pk, dispatched_at__isnull=True).update(
            dispatched_at=timezone.now()
        )
    if first_dispatch:
        metrics.TRIGGERS_DISPATCHED.labels(event_type=trigger.event_type).inc()
    return dict(
        Notification.objects.filter(trigger=trigger, status=NotificationStatus.PENDING).values_list("pk", "channel")
    )


def notification_enqueue(*, notification_id: int, channel: str, countdown: float | None = None) -> bool:
    """Queue a send on the channel's queue. False if the broker refused: the sweeper will find it."""
    from config.celery import app

    try:
        app.send_task(SEND_TASKS[Channel(channel)], args=[notification_id], countdown=countdown)
        return True
    except Exception as exc:
        logger.warning("could not queue notification %s: %s", notification_id, type(exc).__name__)
        return False
