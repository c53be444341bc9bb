"""Fallback on delivery failure: a message a vendor accepted but could not deliver is sent once
more through the next vendor of its channel.

Policy (stated once, here):
- Only channels in DELIVERY_FALLBACK_CHANNELS (default: sms). Email's bounces blame the address,
  which a second ESP would bounce too.
- Only an `undelivered` receipt for a carrier reason: the recipient's own faults
  (receipt_mapping.TWILIO_RECIPIENT_FAULT_CODES: unreachable, unknown, landline, blocked,
  unsubscribed) are not retried anywhere.
- Only the notification's current message: a receipt about an older attempt starts nothing.
- At most once per undelivered attempt (`fallback_started_at`, claimed by a conditional UPDATE,
  so duplicate receipts and concurrent workers start one fallback), and never through a vendor
  that already accepted this notification: each vendor gets it at most once.
- The fallback is a new DeliveryAttempt; the notification stays `sent` and points at the new
  vendor message, whose receipts then decide its delivery state. Vendors with an open circuit
  or a spent rate limit are passed over; if none is left it stays `undelivered`.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from notifications import metrics
from notifications.models import (
    AttemptOutcome,
    DeliveryAttempt,
    DeliveryState,
    Notification,
    NotificationStatus,
    Vendor,
)
from notifications.publisher import task_publish_bounded
from notifications.receipt_mapping import TWILIO_RECIPIENT_FAULT_CODES
from notifications.routing import channel_vendors, route_for
from notifications.sending import Accepted, outbound_message, vendor_attempt

logger = logging.getLogger(__name__)

TASK_NAME = "notifications.tasks.delivery_fallback_send"


def delivery_fallback_wanted(*, channel: str, vendor_code: str) -> bool:
    """Whether an undelivered message on `channel` with the vendor's `vendor_code` is sent again."""
    return channel in settings.DELIVERY_FALLBACK_CHANNELS and vendor_code not in TWILIO_RECIPIENT_FAULT_CODES


def delivery_fallback_request(*, attempt_id: int, vendor_code: str) -> bool:
    """After an undelivered receipt is committed: hand the fallback to a worker when the policy
    wants one. True when a task was published. Never raises (the receipt is already stored)."""
    channel = DeliveryAttempt.objects.filter(pk=attempt_id).values_list("notification__channel", flat=True).first()
    if channel is None or not delivery_fallback_wanted(channel=channel, vendor_code=vendor_code):
        logger.info("undelivered (code %s): no delivery fallback by policy", vendor_code or "-",
                    extra={"attempt_id": attempt_id})
        return False
    published = task_publish_bounded(TASK_NAME, args=[attempt_id])
    if not published:
        logger.error("delivery fallback not handed to a worker (broker unavailable)", extra={"attempt_id": attempt_id})
    return published


def delivery_fallbacks_sweep(*, grace_seconds: float = 60.0, limit: int = 100) -> int:
    """Start the fallbacks whose hand-off to a worker was lost (broker down when the receipt
    came): undelivered current messages, unclaimed, reported more than `grace_seconds` ago.
    Run by beat; returns how many fallbacks it started."""
    reported_before = timezone.now() - timedelta(seconds=grace_seconds)
    due = (
        DeliveryAttempt.objects.filter(
            delivery_state=DeliveryState.UNDELIVERED, fallback_started_at__isnull=True,
            notification__status=NotificationStatus.SENT,
            notification__vendor_message_id=F("vendor_message_id"),
            notification__channel__in=settings.DELIVERY_FALLBACK_CHANNELS,
            notification__delivery_state_at__lte=reported_before,
        )
        .exclude(delivery_code__in=list(TWILIO_RECIPIENT_FAULT_CODES))
        .order_by("id")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(delivery_fallback_send(attempt_id=attempt_id) not in ("not_claimed", "not_current")
               for attempt_id in list(due))


def delivery_fallback_send(*, attempt_id: int) -> str:
    """Send the undelivered message of `attempt_id` through the next vendor. Safe to call any
    number of times: only the first call claims the attempt. Returns what happened: `sent`,
    `no_vendor`, `failed`, or why nothing was done (`not_claimed`, `not_current`).

    1. Claim the undelivered attempt (conditional UPDATE on `fallback_started_at`).
    2. Stop unless its message is still the notification's current one.
    3. Walk the channel's vendors that never accepted this notification, by priority: one
       attempt each (written before, completed after the call) until one accepts.
    4. Point the notification at the new message (its delivery state starts again at accepted).
    """
    now = timezone.now()
    claimed = DeliveryAttempt.objects.filter(
        pk=attempt_id, fallback_started_at__isnull=True, delivery_state=DeliveryState.UNDELIVERED
    ).update(fallback_started_at=now)
    if claimed != 1:
        return "not_claimed"
    attempt = DeliveryAttempt.objects.select_related("notification").get(pk=attempt_id)
    notification = attempt.notification
    if notification.status != NotificationStatus.SENT or notification.vendor_message_id != attempt.vendor_message_id:
        return "not_current"
    used = set(notification.attempts.filter(outcome=AttemptOutcome.SENT).values_list("vendor_id", flat=True))
    candidates = [vendor for vendor in channel_vendors(channel=notification.channel) if vendor.pk not in used]
    result = "no_vendor"
    for vendor in candidates:
        outcome = _try_vendor(notification, vendor, previous_message_id=attempt.vendor_message_id)
        if outcome in ("sent", "permanent"):
            result = "sent" if outcome == "sent" else "failed"
            break
        if outcome == "failed":
            result = "failed"
    metrics.DELIVERY_FALLBACKS.labels(channel=notification.channel, result=result).inc()
    logger.info("delivery fallback: %s", result, extra={"notification_id": notification.pk, "attempt_id": attempt_id})
    return result


def _try_vendor(notification: Notification, vendor: Vendor, *, previous_message_id: str) -> str:
    """One fallback attempt through `vendor`: `sent`, `skipped` (circuit or rate limit),
    `permanent` or `failed`."""
    route = route_for(vendor)
    if not route.circuit.try_acquire():
        return "skipped"
    if not route.limiter.try_acquire().allowed:
        route.circuit.release()
        return "skipped"
    tried = vendor_attempt(notification, route, outbound_message(notification))
    if not isinstance(tried, Accepted):
        outcome, _error, _row = tried
        return "permanent" if outcome == AttemptOutcome.PERMANENT_ERROR else "failed"
    message_id = tried.result.message_id[:255]
    now = timezone.now()
    DeliveryAttempt.objects.filter(pk=tried.attempt.pk).update(
        outcome=AttemptOutcome.SENT, duration_ms=tried.duration * 1000, status_code=tried.result.status_code,
        vendor_message_id=message_id,
    )
    Notification.objects.filter(
        Q(vendor_message_id=previous_message_id), pk=notification.pk, status=NotificationStatus.SENT
    ).update(vendor=vendor, vendor_message_id=message_id, delivery_state=DeliveryState.ACCEPTED, delivery_state_at=now, updated_at=now)
    return "sent"
