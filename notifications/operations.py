"""What operators do by hand: resend, requeue dead letters, send a test message."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from notifications.dispatch import notification_enqueue
from notifications.models import Channel, Notification, NotificationStatus, NotificationTrigger

logger = logging.getLogger(__name__)

RESENDABLE = (NotificationStatus.DEAD, NotificationStatus.FAILED)
TEST_MESSAGE_EVENT = "vendor_test"


def notifications_resend(*, notification_ids: list[int], requested_by: str) -> int:
    """Put failed or dead notifications back to `pending` with a fresh retry budget, and
    queue them once that commits. Others (sent, in flight) are left alone. Returns how many."""
    with transaction.atomic():
        rows = list(
            Notification.objects.select_for_update(skip_locked=True)
            .filter(pk__in=notification_ids, status__in=RESENDABLE)
            .values_list("pk", "channel")
        )
        Notification.objects.filter(pk__in=[pk for pk, _ in rows]).update(
            status=NotificationStatus.PENDING,
            attempt_count=0,
            delivery_count=0,
            next_attempt_at=None,
            lease_until=None,
            last_error="",
            updated_at=timezone.now(),
        )
        transaction.on_commit(lambda: [notification_enqueue(notification_id=pk, channel=ch) for pk, ch in rows])
    logger.info("%s resent %d notifications", requested_by, len(rows))
    return len(rows)


def notifications_requeue_dead(*, since: datetime, requested_by: str) -> int:
    """Resend every dead notification created since `since`; returns how many were queued."""
    ids = list(
        Notification.objects.filter(status=NotificationStatus.DEAD, created_at__gte=since).values_list("pk", flat=True)
    )
    return notifications_resend(notification_ids=ids, requested_by=requested_by) if ids else 0


def test_message_send(*, channel: str, to: str, requested_by: str) -> Notification:
    """Queue a test message to `to` through the channel's normal routing (so it falls back
    like any other send). Its text is fixed, so it needs no template."""
    channel = Channel(channel)
    text = f"Beacon test message requested by {requested_by} at {timezone.now():%Y-%m-%d %H:%M:%S} UTC."
    with transaction.atomic():
        trigger = NotificationTrigger.objects.create(
            event_type=TEST_MESSAGE_EVENT,
            locale="en",
            payload={},
            recipients={channel: to},
            subject_ref=f"test:{uuid.uuid4()}",
            relay_after=timezone.now(),
            dispatched_at=timezone.now(),
        )
        notification = Notification.objects.create(
            trigger=trigger,
            event_type=TEST_MESSAGE_EVENT,
            channel=channel,
            recipient=to,
            locale="en",
            template_version="test",
            rendered_subject="Beacon test message" if channel == Channel.EMAIL else "",
            rendered_text=text,
        )
        transaction.on_commit(lambda: notification_enqueue(notification_id=notification.pk, channel=channel))
    return notification
