"""Every status change of a notification, in one place: where a newcomer finds them all.

States and allowed transitions (who triggers each, and the function here that writes it):

| from                | to          | when                                                      | by (function)                                      |
|---------------------|-------------|-----------------------------------------------------------|----------------------------------------------------|
| (new)               | `pending`   | a dispatch creates it                                     | dispatch (`notifications_insert_dispatched`)       |
| (new)               | `sending`   | a dispatch that sends at once creates it claimed          | dispatch (`notifications_claim_at_insert`)         |
| (new)               | `failed`    | its template fails to render at dispatch                  | dispatch (stored so)                               |
| `pending|retrying`  | `sending`   | due (`next_attempt_at` empty or past): a send claims it   | send task (`notification_claim`)                   |
| `sending`           | `sending`   | its lease ran out (worker lost): another send claims it   | send task (`notification_claim`)                   |
| `sending`           | `sending`   | a run stretches its own lease (failover, lookup)          | send (`notification_lease_renew`)                  |
| `sending`           | `sent`      | a vendor accepted it, or a lookup found it accepted       | send (`notification_settle_sent`)                  |
| `sending`           | `failed`    | a permanent error (the recipient or the message)          | send (`notification_settle_failed`)                |
| `sending`           | `retrying`  | every vendor failed, budget left; or all rate-limited     | send (`notification_settle_retry`, `..._rate_limited`) |
| `sending`           | `dead`      | retry budget (rounds or age) spent, or a poison message   | send (`notification_settle_dead`)                  |
| `sending`           | `suppressed`| the recipient is on the suppression list (consent)        | send (`notification_settle_suppressed`)            |
| `sending`           | `pending`   | a dispatch's send raised: unstarted claims are given back | dispatch (`notifications_release_unstarted`)       |
| `failed|dead`       | `pending`   | an operator resends it (fresh retry budget)               | admin, chaos (`notifications_resend`)              |
| `pending|retrying`  | `failed`    | the recipient is erased before it was sent                | retention (`notifications_fail_erased`)            |
| `failed`            | `sent|failed` | an operator's test message gets its vendor's answer      | operations (`notification_test_message_settle`)    |

`sent`, `suppressed` are final; `failed` and `dead` end unless an operator resends. Every write
by a send run is conditional on the run still holding the notification (`sending` with the
same `delivery_count`): a run stuck past its lease, whose notification another run took over,
changes nothing but its own attempt row, except to flag `possible_duplicate` on a notification
the other run has already settled `sent` when its own copy was delivered too (whichever of two
delivering runs settles second flags it); a later claim takes such a copy as the delivery.
The sweeper changes no status: it finds what is due but forgotten
(`notifications_forgotten_take`) and queues it again. Retry scheduling: the send
asks for a next run (`SendOutcome.retry_in`); a short delay is queued (`notification_retry_schedule`),
a long one is left to the sweeper, which finds the row by its `next_attempt_at`.

The hand-written statements these use are in statements.py.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from notifications import metrics, statements
from notifications.models import Channel, DeliveryAttempt, Notification, NotificationStatus, Vendor
from notifications.publisher import notification_enqueue
from notifications.routing import channel_vendors
from notifications.vendors.base import VendorResult

logger = logging.getLogger(__name__)

RESENDABLE = (NotificationStatus.DEAD, NotificationStatus.FAILED)
# Error texts are cut to this many characters before they are stored.
ERROR_TEXT_LIMIT = 2000


@dataclass(frozen=True)
class SendOutcome:
    """What the caller should do next: nothing, or run the send again in `retry_in` seconds."""

    status: str
    retry_in: float | None = None


@dataclass(frozen=True)
class Accepted:
    """A vendor accepted the message; its attempt row is completed when the notification settles."""

    attempt: DeliveryAttempt
    duration: float
    result: VendorResult


def lease_seconds(vendors: list[Vendor]) -> float:
    """How long a send through `vendors` may hold its notification: every vendor's timeout, plus a
    margin. A lookup after an unknown outcome renews the lease first (`notification_lease_renew`)."""
    return sum(vendor.timeout_seconds for vendor in vendors) + settings.NOTIFICATION_LEASE_MARGIN


# -- claims -----------------------------------------------------------------------------------


def notification_claim(*, notification_id: int, vendors: list[Vendor]) -> tuple[Notification | None, SendOutcome]:
    """Take the notification for this run: one conditional UPDATE that must hit one row, and
    returns it (with its trigger's creation time) in the same round trip. On refusal, returns
    None and why (with when to look again, if ever)."""
    now = timezone.now()
    lease_until = now + timedelta(seconds=lease_seconds(vendors))
    notification = statements.notification_claim_returning(notification_id=notification_id, now=now, lease_until=lease_until)
    if notification is not None:
        return notification, SendOutcome(status=notification.status)
    notification = Notification.objects.filter(pk=notification_id).first()
    if notification is None:
        return None, SendOutcome(status="gone")
    return None, _refusal(notification, now)


def _refusal(notification: Notification, now: datetime) -> SendOutcome:
    if notification.status == NotificationStatus.SENDING and notification.lease_until:
        # Another run holds it, or a dead worker's lease has not run out yet.
        return SendOutcome(status="leased", retry_in=max(0.5, (notification.lease_until - now).total_seconds() + 0.5))
    if notification.status in statements.CLAIMABLE and notification.next_attempt_at:
        return SendOutcome(status="not_due", retry_in=max(0.5, (notification.next_attempt_at - now).total_seconds()))
    return SendOutcome(status=notification.status)


def notifications_claim_at_insert(wanted: list[Notification]) -> None:
    """Claim rows about to be inserted (in memory), as `notification_claim` would, for sends made
    one after the other in channel order: each lease covers the sends before it too, so none
    runs out before its send starts. Sorts `wanted` into that order."""
    wanted.sort(key=lambda notification: Channel.values.index(notification.channel))
    now = timezone.now()
    leased = 0.0
    for notification in wanted:
        if notification.status != NotificationStatus.PENDING:
            continue
        leased += lease_seconds(channel_vendors(channel=notification.channel))
        notification.status = NotificationStatus.SENDING
        notification.delivery_count = 1
        notification.lease_until = now + timedelta(seconds=leased)


def notifications_release_unstarted(notifications: list[Notification]) -> None:
    """Give back claims a dispatch took for sends that did not finish: `pending` again, unless a
    vendor call of theirs is still open (its outcome is unknown: that one waits out its lease,
    and the send that takes it over closes the attempt, as after a worker lost mid-call).
    Best effort: if the database is what failed, the leases run out on their own."""
    if not notifications:
        return
    try:
        Notification.objects.filter(
            pk__in=[notification.pk for notification in notifications],
            status=NotificationStatus.SENDING,
            delivery_count=1,
        ).exclude(attempts__outcome="").update(status=NotificationStatus.PENDING, lease_until=None, updated_at=timezone.now())
    except Exception as exc:
        logger.warning("could not give back the dispatch's claims: %s", type(exc).__name__)


def notification_lease_renew(*, notification: Notification, seconds: float) -> bool:
    """Stretch this run's lease to at least `seconds` from now (never shorten it), if the
    notification is still this run's (same delivery, still sending). False: another run took it
    over when this one's lease ran out, and this run must stop."""
    lease_until = timezone.now() + timedelta(seconds=seconds)
    renewed = _held(notification).update(lease_until=Greatest(F("lease_until"), Value(lease_until))) == 1
    if renewed:
        notification.lease_until = max(notification.lease_until or lease_until, lease_until)
    return renewed


def _held(notification: Notification) -> QuerySet:
    """The notification, only while the run that claimed it still holds it."""
    return Notification.objects.filter(
        pk=notification.pk, status=NotificationStatus.SENDING, delivery_count=notification.delivery_count
    )


# -- settling a send run ------------------------------------------------------------------------


def _settle(notification: Notification, **fields: object) -> int:
    """Write the run's result, unless another run took the notification over meanwhile."""
    fields.setdefault("updated_at", timezone.now())
    return _held(notification).update(lease_until=None, **fields)


def notification_settle_sent(*, notification: Notification, accepted: Accepted, possible_duplicate: bool) -> SendOutcome:
    """Complete the attempt and mark the notification sent: one statement (both or neither),
    unless another run took the notification over meanwhile (then only the attempt, and the
    outcome is `taken_over`).

    Two runs can both deliver when one was held up past its lease (cut off the network mid-call)
    and the other took over. Whichever settles second flags the notification `possible_duplicate`:
    a run whose attempt is the second `sent` one, or a run that lost its claim to a run that has
    already settled `sent`."""
    now = timezone.now()
    vendor = accepted.attempt.vendor
    settled_flagged, flagged_late = statements.notification_settle_sent_with_attempt(
        notification=notification, attempt_id=accepted.attempt.pk, duration_ms=accepted.duration * 1000,
        status_code=accepted.result.status_code, message_id=accepted.result.message_id[:255], vendor_id=vendor.pk,
        now=now, possible_duplicate=possible_duplicate,
    )
    if settled_flagged is None:  # another run holds the notification: this copy is only on the attempt
        if flagged_late:
            metrics.POSSIBLE_DUPLICATES.labels(channel=notification.channel, vendor=vendor.name).inc()
        logger.warning("delivered by a run that had lost its claim%s", ": possible duplicate" if flagged_late else "",
                       extra={"notification_id": notification.pk, "vendor": vendor.name})
        return SendOutcome(status="taken_over")
    metrics.NOTIFICATIONS_FINISHED.labels(channel=notification.channel, vendor=vendor.name, status="sent").inc()
    if settled_flagged:
        metrics.POSSIBLE_DUPLICATES.labels(channel=notification.channel, vendor=vendor.name).inc()
        logger.warning("notification sent after an unknown outcome: possible duplicate",
                       extra={"notification_id": notification.pk, "vendor": vendor.name})
    metrics.DELIVERY_LATENCY.labels(channel=notification.channel).observe(
        (now - notification.trigger_created_at).total_seconds()
    )
    return SendOutcome(status=NotificationStatus.SENT)


def notification_settle_failed(*, notification: Notification, error: str) -> SendOutcome:
    _settle(notification, status=NotificationStatus.FAILED, last_error=error[:ERROR_TEXT_LIMIT],
            attempt_count=notification.attempt_count + 1)
    metrics.NOTIFICATIONS_FINISHED.labels(channel=notification.channel, vendor="", status="failed").inc()
    logger.warning("notification failed permanently: %s", error, extra={"notification_id": notification.pk})
    return SendOutcome(status=NotificationStatus.FAILED)


def notification_settle_dead(*, notification: Notification, error: str, attempt_count: int | None = None) -> SendOutcome:
    _settle(
        notification,
        status=NotificationStatus.DEAD,
        last_error=error[:ERROR_TEXT_LIMIT],
        next_attempt_at=None,
        attempt_count=notification.attempt_count if attempt_count is None else attempt_count,
    )
    metrics.NOTIFICATIONS_FINISHED.labels(channel=notification.channel, vendor="", status="dead").inc()
    logger.error("notification dead: %s", error, extra={"notification_id": notification.pk})
    return SendOutcome(status=NotificationStatus.DEAD)


def notification_settle_retry(*, notification: Notification, error: str) -> SendOutcome:
    """Every vendor failed this round: `retrying` after a backoff, or `dead` once the budget
    (NOTIFICATION_MAX_ATTEMPTS rounds or NOTIFICATION_MAX_AGE) is spent."""
    attempts = notification.attempt_count + 1
    age = (timezone.now() - notification.created_at).total_seconds()
    if attempts >= settings.NOTIFICATION_MAX_ATTEMPTS or age >= settings.NOTIFICATION_MAX_AGE:
        return notification_settle_dead(
            notification=notification, error=f"Retry budget spent after {attempts} rounds. Last error: {error}",
            attempt_count=attempts,
        )
    delay = retry_delay(attempts)
    _settle(
        notification,
        status=NotificationStatus.RETRYING,
        attempt_count=attempts,
        last_error=error[:ERROR_TEXT_LIMIT],
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
    )
    metrics.NOTIFICATION_RETRIES.labels(channel=notification.channel).inc()
    return SendOutcome(status=NotificationStatus.RETRYING, retry_in=delay)


def notification_settle_rate_limited(*, notification: Notification, wait: float) -> SendOutcome:
    """Every vendor's rate limit is spent: delayed until a permit is free; not a retry round."""
    delay = max(0.05, wait)
    _settle(
        notification,
        status=NotificationStatus.RETRYING,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        last_error="Every vendor's send-rate limit is spent; delayed.",
    )
    return SendOutcome(status=NotificationStatus.RETRYING, retry_in=delay)


def notification_settle_suppressed(*, notification: Notification, reason: str) -> SendOutcome:
    """The recipient is on the suppression list: `suppressed`, final; no vendor is called."""
    Notification.objects.filter(pk=notification.pk, status=NotificationStatus.SENDING).update(
        status=NotificationStatus.SUPPRESSED,
        lease_until=None,
        next_attempt_at=None,
        last_error=reason[:ERROR_TEXT_LIMIT],
        updated_at=timezone.now(),
    )
    metrics.NOTIFICATIONS_FINISHED.labels(channel=notification.channel, vendor="", status="suppressed").inc()
    return SendOutcome(status=NotificationStatus.SUPPRESSED)


# -- retry scheduling ---------------------------------------------------------------------------


def retry_delay(attempt: int) -> float:
    """Seconds before round `attempt + 1`: full jitter over an exponential cap, with a floor.

    The cap is base * 2**(attempt-1), at most NOTIFICATION_RETRY_MAX_DELAY; the floor (the
    base delay) keeps full jitter from retrying at once.
    """
    base = settings.NOTIFICATION_RETRY_BASE_DELAY
    cap = min(settings.NOTIFICATION_RETRY_MAX_DELAY, base * (2 ** max(0, attempt - 1)))
    return random.uniform(base, max(base, cap))


def retry_countdown(outcome: SendOutcome) -> float | None:
    """The countdown for the send's next run, or None: nothing to run, or a delay left to the
    sweeper (the row says when it is due), since a countdown near the broker's visibility
    timeout would be delivered twice (celery#2599)."""
    if outcome.retry_in is None or outcome.retry_in > settings.NOTIFICATION_MAX_COUNTDOWN:
        return None
    return outcome.retry_in


def notification_retry_schedule(*, notification_id: int, channel: str, outcome: SendOutcome) -> bool:
    """Queue the next run of a send that asked for one (see `retry_countdown`); True if queued.
    False also when the broker refused: the row is `retrying` with its `next_attempt_at`, and
    the sweeper queues it then."""
    countdown = retry_countdown(outcome)
    if countdown is None:
        return False
    return notification_enqueue(notification_id=notification_id, channel=channel, countdown=countdown)


# -- operators, the sweeper, erasure ------------------------------------------------------------


def notifications_resend(*, notification_ids: list[int]) -> list[tuple[int, str]]:
    """Put failed or dead notifications back to `pending` with a fresh retry budget, and queue
    them once that commits. Others (sent, in flight) are left alone. Returns (id, channel) of
    those put back."""
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
    return rows


def notifications_forgotten_take(*, stale_seconds: float, limit: int) -> list[tuple[int, str]]:
    """Up to `limit` notifications that are due but were not touched for `stale_seconds` (their
    queued message was lost, or a worker died holding the lease), oldest id first, as (id,
    channel); each is touched, so the next sweep leaves it alone for `stale_seconds` again."""
    now = timezone.now()
    stale = now - timedelta(seconds=stale_seconds)
    forgotten = (
        Q(status=NotificationStatus.PENDING, updated_at__lt=stale)
        | Q(status=NotificationStatus.RETRYING, next_attempt_at__lt=stale, updated_at__lt=stale)
        | Q(status=NotificationStatus.SENDING, lease_until__lt=now, updated_at__lt=stale)
    )
    rows = list(Notification.objects.filter(forgotten).order_by("id").values_list("pk", "channel")[:limit])
    if rows:
        Notification.objects.filter(pk__in=[pk for pk, _ in rows]).update(updated_at=now)
    return rows


def notifications_fail_erased(notifications: QuerySet) -> int:
    """The waiting ones (`pending`, `retrying`) of a person being erased end `failed`: nothing may
    be sent to an address about to be gone. One in a vendor call now finishes. Returns how many."""
    return notifications.filter(status__in=[NotificationStatus.PENDING, NotificationStatus.RETRYING]).update(
        status=NotificationStatus.FAILED, last_error="Recipient erased before sending.", next_attempt_at=None,
        updated_at=timezone.now(),
    )


def notification_test_message_settle(*, notification: Notification, message_id: str, error: str) -> None:
    """An operator's test message got its vendor's answer: `sent` with its id, or `failed` with
    `error` (empty when accepted). Until then it is stored `failed`, "in flight", so no sweeper or
    worker ever sends it elsewhere."""
    now = timezone.now()
    Notification.objects.filter(pk=notification.pk).update(
        status=NotificationStatus.FAILED if error else NotificationStatus.SENT,
        vendor_message_id=message_id[:255], sent_at=None if error else now,
        last_error=error[:ERROR_TEXT_LIMIT], updated_at=now,
    )
