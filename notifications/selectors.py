"""Reads of notification data for other apps and pages."""

from __future__ import annotations

from django.db.models import Count, Q

from notifications.models import AttemptOutcome, Notification, NotificationStatus

# Attempts that reached a vendor (skips for an open circuit or a spent rate limit do not).
_VENDOR_CALLS = ~Q(attempts__outcome__in=[AttemptOutcome.SKIPPED_CIRCUIT_OPEN, AttemptOutcome.RATE_LIMITED])


def notifications_for_subject(*, subject_ref: str) -> list[dict]:
    """The notifications of every trigger about `subject_ref` (e.g. "order:<uuid>")."""
    rows = (
        Notification.objects.filter(trigger__subject_ref=subject_ref)
        .select_related("vendor")
        .annotate(attempts_made=Count("attempts", filter=_VENDOR_CALLS))
        .order_by("created_at", "id")
    )
    return [
        {
            "channel": row.channel,
            "status": row.status,
            "vendor": row.vendor.name if row.vendor else None,
            "attempts": row.attempts_made,
            "possible_duplicate": row.possible_duplicate,
            "sent_at": row.sent_at,
            # After `sent`, what the vendor's receipts say (accepted until the first one comes).
            "delivery_state": row.delivery_state or ("accepted" if row.status == NotificationStatus.SENT else None),
            "delivery_state_at": row.delivery_state_at,
            "updated_at": row.updated_at,
        }
        for row in rows
    ]
