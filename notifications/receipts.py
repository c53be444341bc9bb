"""Delivery receipts: what became of a message after a vendor accepted it.

One state machine for every vendor (Twilio status callbacks, ESP tracking webhooks):

    accepted -> delivered -> complained
    accepted -> undelivered | bounced | complained

It only moves forward. States are ranked (DELIVERY_RANK) and a receipt can only raise the
rank, so the final state is the highest-ranked state any receipt reported, whatever order the
receipts came in and however often each came: a late `sent` never overwrites `delivered`. When
a vendor contradicts itself (`delivered`, then `undelivered`), the worse news wins.

Each receipt is stored once per (attempt, vendor status, vendor code): a repeated callback is
recognised and changes nothing. The attempt keeps its own delivery state; the notification
shows the state of its current vendor message (the one `sent` recorded, or the delivery
fallback's, delivery_fallback.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from notifications import metrics
from notifications.consent import suppression_add
from notifications.models import (
    AttemptOutcome,
    DeliveryAttempt,
    DeliveryReceipt,
    DeliveryState,
    Notification,
    ReceiptRequestToken,
    SuppressionSource,
    Vendor,
)

logger = logging.getLogger(__name__)

# Higher is later (or worse) news; a receipt never lowers a message's rank.
DELIVERY_RANK: dict[str, int] = {
    DeliveryState.ACCEPTED: 0,
    DeliveryState.DELIVERED: 1,
    DeliveryState.UNDELIVERED: 2,
    DeliveryState.BOUNCED: 3,
    DeliveryState.COMPLAINED: 4,
}
# States after which the vendor reports nothing more about delivery: counted in the metrics.
FINAL_STATES = frozenset(DELIVERY_RANK) - {DeliveryState.ACCEPTED}
# Bounce codes that mean the address can never be reached (Postmark's Type, anymail's reject
# reason): the address goes on the suppression list. A soft bounce does not.
HARD_BOUNCE_CODES = frozenset({"HardBounce", "BadEmailAddress", "bounced", "invalid"})
# Bounds of what a vendor may write into a receipt (its fields are the outside world's text).
MAX_VENDOR_STATUS = 32
MAX_VENDOR_CODE = 32
MAX_DESCRIPTION = 200
MAX_REQUEST_TOKEN = 128


def delivery_state_merge(current: str, reported: str) -> str:
    """The state after `reported` arrives in `current` ("" = no receipt yet). Pure; commutative,
    associative and idempotent, so order and repetition of receipts do not matter."""
    if not current:
        return reported
    return reported if DELIVERY_RANK[reported] > DELIVERY_RANK[current] else current


def states_below(state: str) -> list[str]:
    """The states (and "" for none yet) that `state` may replace."""
    return ["", *(other for other, rank in DELIVERY_RANK.items() if rank < DELIVERY_RANK[state])]


@dataclass(frozen=True)
class Receipt:
    """One vendor report, already mapped to a DeliveryState by the webhook that received it."""

    vendor_message_id: str
    vendor_status: str
    state: str
    vendor_code: str = ""
    description: str = ""
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class ReceiptResult:
    """`unknown_message`: no sent attempt of this vendor has that id; `replayed`: this very
    request (its token) was received before, nothing changed; `duplicate`: the same receipt was
    stored before, nothing changed; `recorded`: stored (`advanced`: it moved the attempt's state)."""

    status: str
    attempt_id: int | None = None
    advanced: bool = False


def receipt_record(*, vendor: Vendor, receipt: Receipt, request_token: str = "") -> ReceiptResult:
    """Store one receipt and move the attempt's (and, if it is the current message, the
    notification's) delivery state forward. Safe to call twice with the same receipt, and
    concurrently: the unique receipt row decides who records it, the conditional UPDATEs who
    moves the state.

    1. Find the attempt: this vendor's `sent` attempt with that message id.
    2. Store the request's token once (a replayed request stops here), then the receipt once
       (a duplicate stops here); both in the transaction of the state change.
    3. Raise the attempt's state if the receipt's rank is higher (one conditional UPDATE).
    4. Raise the notification's state the same way, if the attempt's message is its current one.
    5. After commit: a hard bounce puts the address on the suppression list (consent.py); an
       undelivered message may be sent once more elsewhere (delivery_fallback.py).
    """
    if receipt.state not in DELIVERY_RANK:
        raise ValueError(f"unknown delivery state {receipt.state!r}")
    attempt = (
        DeliveryAttempt.objects.filter(vendor=vendor, vendor_message_id=receipt.vendor_message_id,
                                       outcome=AttemptOutcome.SENT)
        .select_related("notification")
        .first()
    )
    if attempt is None or not receipt.vendor_message_id:
        return ReceiptResult(status="unknown_message")
    now = timezone.now()
    with transaction.atomic():
        if request_token and not _token_claim(request_token):
            return ReceiptResult(status="replayed", attempt_id=attempt.pk)
        try:
            with transaction.atomic():
                DeliveryReceipt.objects.create(
                    attempt=attempt,
                    vendor_status=receipt.vendor_status[:MAX_VENDOR_STATUS],
                    state=receipt.state,
                    vendor_code=receipt.vendor_code[:MAX_VENDOR_CODE],
                    description=receipt.description[:MAX_DESCRIPTION],
                    occurred_at=receipt.occurred_at,
                )
        except IntegrityError:
            return ReceiptResult(status="duplicate", attempt_id=attempt.pk)
        advanced = DeliveryAttempt.objects.filter(
            pk=attempt.pk, delivery_state__in=states_below(receipt.state)
        ).update(delivery_state=receipt.state, delivery_code=receipt.vendor_code[:MAX_VENDOR_CODE]) == 1
        if advanced:
            Notification.objects.filter(
                pk=attempt.notification_id, vendor_id=vendor.pk, vendor_message_id=receipt.vendor_message_id,
                delivery_state__in=states_below(receipt.state),
            ).update(delivery_state=receipt.state, delivery_state_at=now, updated_at=now)
            if receipt.state in FINAL_STATES:
                transaction.on_commit(lambda: _count(vendor, attempt.notification.channel, receipt.state))
            if receipt.state == DeliveryState.BOUNCED and receipt.vendor_code in HARD_BOUNCE_CODES:
                notification = attempt.notification
                transaction.on_commit(lambda: suppression_add(
                    channel=notification.channel, address=notification.recipient,
                    source=SuppressionSource.HARD_BOUNCE, note=f"{vendor.name}: {receipt.vendor_code}"))
            if receipt.state == DeliveryState.UNDELIVERED:
                from notifications.delivery_fallback import delivery_fallback_request

                transaction.on_commit(lambda: delivery_fallback_request(attempt_id=attempt.pk,
                                                                        vendor_code=receipt.vendor_code))
    logger.info("delivery receipt %s (%s) for attempt %s", receipt.vendor_status, receipt.state, attempt.pk,
                extra={"notification_id": attempt.notification_id, "vendor": vendor.name, "advanced": advanced})
    return ReceiptResult(status="recorded", attempt_id=attempt.pk, advanced=advanced)


def _token_claim(token: str) -> bool:
    """Store a receipt request's token; False when it was stored before (the request is a replay)."""
    try:
        with transaction.atomic():
            ReceiptRequestToken.objects.create(token=token[:MAX_REQUEST_TOKEN])
    except IntegrityError:
        return False
    return True


def _count(vendor: Vendor, channel: str, state: str) -> None:
    metrics.DELIVERY_RECEIPTS.labels(vendor=vendor.name, channel=channel, state=state).inc()

