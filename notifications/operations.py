"""What operators do by hand: resend, requeue dead letters, send a test message."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from foundation.request_context import request_id_get
from notifications import lifecycle
from notifications.models import (
    AttemptOutcome,
    Channel,
    DeliveryAttempt,
    Notification,
    NotificationStatus,
    NotificationTrigger,
    Vendor,
)
from notifications.routing import route_for
from notifications.vendors.base import OutboundMessage, VendorError

logger = logging.getLogger(__name__)

TEST_MESSAGE_EVENT = "vendor_test"


def notifications_resend(*, notification_ids: list[int], requested_by: str) -> int:
    """Put failed or dead notifications back to `pending` with a fresh retry budget, and
    queue them once that commits (lifecycle.py). Others (sent, in flight) are left alone.
    Returns how many."""
    rows = lifecycle.notifications_resend(notification_ids=notification_ids)
    logger.info("%s resent %d notifications", requested_by, len(rows))
    return len(rows)


def notifications_requeue_dead(*, since: datetime, requested_by: str) -> int:
    """Resend every dead notification created since `since`; returns how many were queued."""
    ids = list(
        Notification.objects.filter(status=NotificationStatus.DEAD, created_at__gte=since).values_list("pk", flat=True)
    )
    return notifications_resend(notification_ids=ids, requested_by=requested_by) if ids else 0


@dataclass(frozen=True)
class VendorAnswer:
    """What one vendor answered to an operator's test message."""

    vendor: str
    notification_id: int
    accepted: bool
    duration_ms: float
    message_id: str = ""
    status_code: int | None = None
    vendor_code: str = ""
    kind: str = ""  # for a refusal: "permanent", "transient" or "unknown" (no answer in time)
    error: str = ""

    def summary(self) -> str:
        """One sentence for the operator, e.g. "sms-fallback accepted it in 12 ms (HTTP 201, id SM…)."."""
        took = f"in {duration_text(self.duration_ms)}"
        details = [f"HTTP {self.status_code}" if self.status_code else "", f"code {self.vendor_code}" if self.vendor_code else ""]
        if self.accepted:
            details.append(f"id {self.message_id}" if self.message_id else "")
            shown = ", ".join(d for d in details if d)
            return f"{self.vendor} accepted it {took}" + (f" ({shown})." if shown else ".")
        shown = ", ".join(d for d in [f"{self.kind} error", *details] if d)
        return f"{self.vendor} did not accept it {took} ({shown}): {self.error}"


def duration_text(milliseconds: float | None) -> str:
    """A call's duration for people: "0.4 ms", "12 ms", "1,204 ms"; "—" when unknown."""
    if milliseconds is None:
        return "—"
    return f"{milliseconds:.1f} ms" if milliseconds < 10 else f"{milliseconds:,.0f} ms"


def vendor_test_message_send(*, vendor: Vendor, to: str, requested_by: str) -> VendorAnswer:
    """Send a fixed test message to `to` through exactly `vendor`, now, and return its answer.

    No routing, no fallback, no retry: the vendor is called whatever its circuit or rate limit
    says (an operator may probe a vendor whose circuit is forced open before closing it), and
    the call is not fed to its circuit breaker. It runs in the caller's thread and returns
    within about `vendor.timeout_seconds`.

    1. Store a notification and its attempt row before the call. The notification is stored
       `failed` ("in flight"), so neither the sweeper nor a worker ever sends it elsewhere; if
       this process dies during the call it stays failed, saying the outcome is unknown.
    2. Call the adapter once.
    3. Complete the attempt and the notification (`sent` or `failed`) with what it answered.
    """
    channel = Channel(vendor.channel)
    now = timezone.now()
    text = f"Beacon test message for {vendor.name}, requested by {requested_by} at {now:%Y-%m-%d %H:%M:%S} UTC."
    with transaction.atomic():
        trigger = NotificationTrigger.objects.create(
            event_type=TEST_MESSAGE_EVENT, locale="en", payload={}, recipients={channel: to},
            subject_ref=f"test:{uuid.uuid4()}", relay_after=now, dispatched_at=now,
        )
        notification = Notification.objects.create(
            trigger=trigger, event_type=TEST_MESSAGE_EVENT, channel=channel, recipient=to, locale="en",
            status=NotificationStatus.FAILED, vendor=vendor, attempt_count=1, template_version="test",
            rendered_subject=f"Beacon test message ({vendor.name})" if channel == Channel.EMAIL else "",
            rendered_text=text, last_error="Test message in flight; if this stays, its outcome is unknown.",
        )
        attempt = DeliveryAttempt.objects.create(notification=notification, vendor=vendor, started_at=now)
    message = OutboundMessage(
        channel=channel, to=to, subject=notification.rendered_subject, text=text, html="",
        idempotency_key=notification.idempotency_key, request_id=request_id_get(),
    )
    started = time.perf_counter()
    try:
        result = route_for(vendor).adapter.send(message)
    except VendorError as exc:
        kind = {"permanent": AttemptOutcome.PERMANENT_ERROR, "unknown": AttemptOutcome.TIMEOUT}.get(
            exc.kind, AttemptOutcome.TRANSIENT_ERROR
        )
        answer = VendorAnswer(
            vendor=vendor.name, notification_id=notification.pk, accepted=False,
            duration_ms=(time.perf_counter() - started) * 1000, status_code=exc.status_code,
            vendor_code=exc.vendor_code or "", kind=exc.kind, error=str(exc),
        )
        _test_message_record(notification, attempt, answer, outcome=kind)
        return answer
    except Exception as exc:  # a misconfigured vendor or an adapter bug: the operator sees which
        logger.exception("test message through %s raised", vendor.name)
        answer = VendorAnswer(
            vendor=vendor.name, notification_id=notification.pk, accepted=False,
            duration_ms=(time.perf_counter() - started) * 1000, kind="transient", error=type(exc).__name__,
        )
        _test_message_record(notification, attempt, answer, outcome=AttemptOutcome.TRANSIENT_ERROR)
        return answer
    answer = VendorAnswer(
        vendor=vendor.name, notification_id=notification.pk, accepted=True,
        duration_ms=(time.perf_counter() - started) * 1000, message_id=result.message_id,
        status_code=result.status_code,
    )
    _test_message_record(notification, attempt, answer, outcome=AttemptOutcome.SENT)
    return answer


def _test_message_record(notification: Notification, attempt: DeliveryAttempt, answer: VendorAnswer, *, outcome: str) -> None:
    with transaction.atomic():
        DeliveryAttempt.objects.filter(pk=attempt.pk).update(
            outcome=outcome, duration_ms=answer.duration_ms, status_code=answer.status_code,
            vendor_code=answer.vendor_code[:32], vendor_message_id=answer.message_id[:255], error=answer.error[:2000],
        )
        lifecycle.notification_test_message_settle(
            notification=notification, message_id=answer.message_id, error="" if answer.accepted else answer.summary()
        )
    logger.info("test message via %s: %s", answer.vendor, "accepted" if answer.accepted else answer.kind,
                extra={"notification_id": notification.pk, "vendor": answer.vendor})
