"""Turning a trigger into notifications, and queueing their sends."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from notifications import metrics
from notifications.models import Channel, Notification, NotificationStatus, NotificationTrigger
from notifications.rendering import TemplateRenderError
from notifications.sending import notification_render
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
    """Create the trigger's notifications, rendered; return the pending ones (id -> channel).

    One notification per (trigger, channel, recipient) for each channel that has an address
    and an active template, stored with its rendered content (so every vendor and every retry
    sends the same text; a template that fails to render stores the notification `failed`).
    The rows and the trigger's `dispatched_at` commit together: the first dispatch inserts
    them, a later one (relay, duplicate message) finds the trigger dispatched and only reads.
    """
    trigger = NotificationTrigger.objects.filter(pk=trigger_id).first()
    if trigger is None:
        return {}
    if trigger.dispatched_at is None:
        created = _notifications_create(trigger)
        if created is not None:
            metrics.TRIGGERS_DISPATCHED.labels(event_type=trigger.event_type).inc()
            return {n.pk: n.channel for n in created if n.status == NotificationStatus.PENDING}
    return dict(
        Notification.objects.filter(trigger=trigger, status=NotificationStatus.PENDING).values_list("pk", "channel")
    )


def _notifications_create(trigger: NotificationTrigger) -> list[Notification] | None:
    """Insert the trigger's notifications and mark it dispatched, in one transaction; None if
    another dispatch did it first. The trigger's row lock (the UPDATE) orders racing dispatches."""
    wanted = _notifications_wanted(trigger)
    try:
        with transaction.atomic():
            if not NotificationTrigger.objects.filter(pk=trigger.pk, dispatched_at__isnull=True).update(
                dispatched_at=timezone.now()
            ):
                return None
            return Notification.objects.bulk_create(wanted)
    except IntegrityError:
        # Rows without a dispatched trigger (written by hand): keep them, add what is missing.
        with transaction.atomic():
            Notification.objects.bulk_create(_notifications_wanted(trigger), ignore_conflicts=True)
            NotificationTrigger.objects.filter(pk=trigger.pk).update(dispatched_at=timezone.now())
        return None


def _notifications_wanted(trigger: NotificationTrigger) -> list[Notification]:
    wanted = []
    for channel, address in trigger.recipients.items():
        if channel not in Channel.values or not address:
            continue
        template = template_resolve(event_type=trigger.event_type, channel=channel, locale=trigger.locale)
        if template is None:
            continue
        notification = Notification(
            trigger=trigger,
            event_type=trigger.event_type,
            channel=channel,
            recipient=address,
            locale=trigger.locale,
            request_id=trigger.request_id,
        )
        try:
            notification_render(notification=notification, payload=trigger.payload, template=template)
        except TemplateRenderError as exc:
            notification.status = NotificationStatus.FAILED
            notification.last_error = str(exc)[:2000]
            metrics.NOTIFICATIONS_FINISHED.labels(channel=channel, vendor="", status="failed").inc()
            logger.warning("notification failed permanently: %s", exc, extra={"trigger_id": trigger.pk})
        wanted.append(notification)
    return wanted


def notification_enqueue(*, notification_id: int, channel: str, countdown: float | None = None) -> bool:
    """Queue a send on the channel's queue. False if the broker refused: the sweeper will find it."""
    from config.celery import app

    try:
        app.send_task(SEND_TASKS[Channel(channel)], args=[notification_id], countdown=countdown)
        return True
    except Exception as exc:
        logger.warning("could not queue notification %s: %s", notification_id, type(exc).__name__)
        return False
