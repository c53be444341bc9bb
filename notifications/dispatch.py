"""Turning a trigger into notifications, and queueing their sends."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from notifications import metrics
from notifications.consent import address_hash, notifications_consent_read
from notifications.dead_triggers import trigger_dispatch_attempt_begin, trigger_dispatch_failure_record
from notifications.lifecycle import (
    notification_retry_schedule,
    notifications_claim_at_insert,
    notifications_release_unstarted,
)
from notifications.models import Channel, Notification, NotificationStatus, NotificationTrigger
from notifications.publisher import notification_enqueue
from notifications.rendering import TemplateRenderError
from notifications.routing import channel_vendors
from notifications.sending import notification_render, notification_send, notification_send_claimed
from notifications.statements import notifications_insert_dispatched, trigger_read
from notifications.template_cache import templates_resolve

logger = logging.getLogger(__name__)

def trigger_dispatch(*, trigger_id: int, claimed: NotificationTrigger | None = None) -> list[int]:
    """Create the trigger's notifications and start sending each one still pending.

    `claimed`: the trigger's row as the worker's listener claimed it (trigger_listener.py), so
    the dispatch need not read it again; None reads it.

    With DISPATCH_SENDS_INLINE (the default) the first attempt at each notification runs here,
    one after the other in channel order (email, then SMS), and only a retry goes to the
    channel's queue: a checkout then costs the broker one message instead of three. The rows
    are inserted already claimed for those sends (see `trigger_dispatch_claim`), so a send
    starts without a claim statement. Without it, each send is queued on its channel's queue
    (for workers dedicated to one channel).

    Idempotent: dispatching again creates nothing new and sends nothing twice (a send holds a
    claim on its notification before calling a vendor). Returns the ids of the notifications
    it started sending (or queued).
    """
    if not settings.DISPATCH_SENDS_INLINE:
        pending = sorted(trigger_dispatch_create(trigger_id=trigger_id, claimed=claimed).items(), key=_in_channel_order)
        for notification_id, channel in pending:
            notification_enqueue(notification_id=notification_id, channel=channel)
        return [notification_id for notification_id, _ in pending]
    dispatched = trigger_dispatch_claim(trigger_id=trigger_id, claimed=claimed)
    # The rows it inserted came with their consent (the same statement read it, just before the
    # first vendor call); any other: one read for every send below, not one per send.
    notifications_consent_read(notifications=[n for n in dispatched.claimed if not hasattr(n, "suppressed_by")])
    sends = [(notification.pk, notification.channel, notification) for notification in dispatched.claimed]
    sends += [(pk, channel, None) for pk, channel in sorted(dispatched.pending.items(), key=_in_channel_order)]
    for position, (notification_id, channel, inserted_claimed) in enumerate(sends):
        try:
            if inserted_claimed is not None:
                outcome = notification_send_claimed(notification=inserted_claimed, vendors=channel_vendors(channel=channel))
            else:
                outcome = notification_send(notification_id=notification_id, channel=channel)
        except BaseException:
            # This send and the ones after it go to their queues rather than wait for the
            # sweeper; the claims this dispatch holds on them are given back first (else each
            # queued send would be refused as leased until its lease runs out).
            notifications_release_unstarted([notification for _, _, notification in sends[position:] if notification is not None])
            for queued_id, queued_channel, _ in sends[position:]:
                notification_enqueue(notification_id=queued_id, channel=queued_channel)
            raise
        notification_retry_schedule(notification_id=notification_id, channel=channel, outcome=outcome)
    return [notification_id for notification_id, _, _ in sends]


def _in_channel_order(item: tuple[int, str]) -> tuple[int, int]:
    notification_id, channel = item
    return Channel.values.index(channel), notification_id


def trigger_dispatch_create(*, trigger_id: int, claimed: NotificationTrigger | None = None) -> dict[int, str]:
    """Create the trigger's notifications, rendered; return the pending ones (id -> channel).

    One notification per (trigger, channel, recipient) for each channel that has an address
    and an active template, stored with its rendered content (so every vendor and every retry
    sends the same text; a template that fails to render stores the notification `failed`).
    The rows and the trigger's `dispatched_at` commit together, in one statement: the first
    dispatch inserts them, a later one (relay, duplicate message) finds the trigger dispatched
    and only reads.
    """
    return _dispatch(trigger_id, claim=False, claimed=claimed).pending


@dataclass(frozen=True)
class Dispatched:
    """What one dispatch leaves to send: the rows it inserted already claimed for its own
    sends (in channel order), and the pending ones it found (id -> channel), not claimed."""

    claimed: list[Notification]
    pending: dict[int, str]


def trigger_dispatch_claim(*, trigger_id: int, claimed: NotificationTrigger | None = None) -> Dispatched:
    """`trigger_dispatch_create` for a caller that sends right away, one after the other.

    The first dispatch inserts the notifications already claimed (`sending`, delivered once,
    each leased until the sends before it and its own may have run out of time), so the
    caller sends them with `notification_send_claimed` and no claim statement; a worker lost
    before it sends them leaves leases that run out, and the sweeper queues them then, as for
    any lost send. A later dispatch claims nothing: it returns what is still pending.
    """
    return _dispatch(trigger_id, claim=True, claimed=claimed)


def _dispatch(trigger_id: int, *, claim: bool, claimed: NotificationTrigger | None) -> Dispatched:
    if claimed is not None and claimed.pk != trigger_id:  # a caller's bug: record nothing on either trigger
        raise ValueError(f"claimed row of trigger {claimed.pk} is not trigger {trigger_id}")
    try:
        return _dispatch_trigger(trigger_id, claim=claim, claimed=claimed)
    except Exception as exc:
        trigger_dispatch_failure_record(trigger_id=trigger_id, error=exc)
        raise


def _dispatch_trigger(trigger_id: int, *, claim: bool, claimed: NotificationTrigger | None) -> Dispatched:
    trigger = claimed if claimed is not None else _trigger_fetch(trigger_id)
    if trigger is None or trigger.dead_at is not None:  # a dead trigger waits for an operator
        return Dispatched(claimed=[], pending={})
    # Only a trigger the relay handed over counts its attempts (the hot path stays one statement).
    if trigger.dispatched_at is None and trigger.publish_count and not trigger_dispatch_attempt_begin(trigger=trigger):
        trigger = _trigger_fetch(trigger_id)
        if trigger is None or trigger.dispatched_at is None:
            return Dispatched(claimed=[], pending={})
    if trigger.dispatched_at is None:
        wanted = _notifications_wanted(trigger)
        if claim:
            notifications_claim_at_insert(wanted)
        created = _notifications_create(trigger, wanted, with_consent=claim)
        if created is not None:
            metrics.TRIGGERS_DISPATCHED.labels(event_type=trigger.event_type).inc()
            if not claim:
                pending = {pk: channel for pk, channel, status, *_ in created if status == NotificationStatus.PENDING}
                return Dispatched(claimed=[], pending=pending)
            return Dispatched(claimed=_claimed_rows(trigger, wanted, created), pending={})
    pending = Notification.objects.filter(trigger=trigger, status=NotificationStatus.PENDING).values_list("pk", "channel")
    return Dispatched(claimed=[], pending=dict(pending))


def _claimed_rows(trigger: NotificationTrigger, wanted: list[Notification], created: list[tuple]) -> list[Notification]:
    """The inserted rows this dispatch claimed, as saved model instances (in channel order),
    each with the consent answer the insert returned (consent.notifications_consent_read's)."""
    # One row per channel: recipients is channel -> address.
    inserted = {channel: (pk, marketing, source) for pk, channel, _, marketing, source in created}
    claimed = []
    for notification in wanted:
        notification.pk, notification.is_marketing, notification.suppressed_by = inserted[notification.channel]
        notification._state.adding, notification._state.db = False, connection.alias
        notification.trigger_created_at = trigger.created_at
        if notification.status == NotificationStatus.SENDING:
            claimed.append(notification)
    return claimed


def _notifications_wanted(trigger: NotificationTrigger) -> list[Notification]:
    wanted = []
    addressed = {channel: address for channel, address in trigger.recipients.items() if channel in Channel.values and address}
    templates = templates_resolve(event_type=trigger.event_type, channels=list(addressed), locale=trigger.locale)
    for channel, address in addressed.items():
        template = templates[channel]
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


def _trigger_fetch(trigger_id: int) -> NotificationTrigger | None:
    # int(): a malformed id (a poison message) fails here as ValueError.
    return trigger_read(trigger_id=int(trigger_id))


def _notifications_create(trigger: NotificationTrigger, wanted: list[Notification], *, with_consent: bool) -> list[tuple] | None:
    """Mark the trigger dispatched and insert its notifications, atomically, in one statement
    (statements.py); returns (id, channel, status) of each, followed `with_consent` by its
    consent answer (is marketing, suppression source), or None if another dispatch did it first."""
    hashes = [address_hash(channel=n.channel, address=n.recipient) for n in wanted] if with_consent else None
    try:
        return notifications_insert_dispatched(trigger_id=trigger.pk, wanted=wanted, address_hashes=hashes)
    except IntegrityError:
        # Rows without a dispatched trigger (written by hand): keep them, add what is missing.
        with transaction.atomic():
            Notification.objects.bulk_create(_notifications_wanted(trigger), ignore_conflicts=True)
            NotificationTrigger.objects.filter(pk=trigger.pk).update(dispatched_at=timezone.now())
        return None
