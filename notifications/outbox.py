"""The transactional outbox: triggers are written with the business change and handed over
to Celery after COMMIT; the relay hands over whatever that missed.

The hand-off (settings.TRIGGER_HANDOFF_VIA): by default the trigger's INSERT also notifies
PostgreSQL's channel (statements.trigger_insert), and a listener in the workers publishes it
(trigger_listener.py), so the web never talks to the broker; or ("web") the web publishes it
right after COMMIT (`trigger_handoff`).

At-least-once: a trigger may be published more than once (web and relay, or a reconnect
after the broker accepted it); `trigger_dispatch` makes the second time harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.module_loading import import_string

from foundation.request_context import request_id_get
from notifications import metrics
from notifications.models import Notification, NotificationTrigger
from notifications.publisher import queue_depth, task_publish, task_publish_bounded
from notifications.row_inserts import Statement
from notifications.statements import trigger_insert, trigger_notify

logger = logging.getLogger(__name__)

TRIGGER_DISPATCH_TASK = "notifications.tasks.trigger_dispatch"
# After the relay publishes a trigger it leaves it alone this long (seconds) before
# publishing again, if the trigger is still not dispatched by then.
RELAY_LEASE_SECONDS = 30.0


def trigger_publish(
    *,
    event_type: str,
    locale: str,
    payload: dict[str, Any],
    recipients: dict[str, str],
    subject_ref: str = "",
    insert_with: Callable[[Statement], int] | None = None,
) -> NotificationTrigger:
    """Write a trigger together with the business change; hand it to Celery once that commits.

    The business change is the caller's open `transaction.atomic()`, or its own statement:
    `insert_with` is given the trigger's INSERT ... RETURNING id (statements.trigger_insert),
    runs it as the last part of a statement that writes the caller's rows (checkout/statements.py)
    and returns the trigger's id: one round trip, atomic by itself, so a caller without other
    writes needs no transaction (no BEGIN and COMMIT round trips). Either way the trigger
    commits, or rolls back, with the change. With TRIGGER_HANDOFF_VIA=notify the write also
    notifies the workers' listener (on COMMIT); otherwise the hand-off after COMMIT publishes,
    and never raises nor waits long (see publisher.py). Raises ValueError, before writing
    anything, for an address no notification could store: such a trigger would fail its
    dispatch on every relay pass.
    """
    _recipients_check(recipients)
    trigger = NotificationTrigger(
        event_type=event_type,
        locale=locale,
        payload=payload,
        recipients=recipients,
        subject_ref=subject_ref,
        request_id=request_id_get(),
        relay_after=timezone.now() + timedelta(seconds=settings.OUTBOX_RELAY_GRACE),
    )
    notify = settings.TRIGGER_HANDOFF_VIA == "notify"
    if insert_with is None:
        trigger.save(force_insert=True)
        if notify:  # one more statement here; the checkout's single statement notifies itself
            trigger_notify(trigger_id=trigger.pk)
    else:
        trigger.pk = insert_with(trigger_insert(trigger, notify=notify))
        trigger._state.adding, trigger._state.db = False, connection.alias
    trigger_id = trigger.pk

    def committed() -> None:
        metrics.TRIGGERS_CREATED.labels(event_type=event_type).inc()
        import_string(settings.TRIGGER_HANDOFF)(trigger_id=trigger_id)

    # Outside a transaction the statement has committed and this runs now. robust: the order
    # is committed by then; nothing that goes wrong in the hand-off may turn that into an
    # error for the client (the relay hands the trigger over later anyway).
    transaction.on_commit(committed, robust=True)
    return trigger


def _recipients_check(recipients: dict[str, str]) -> None:
    longest = Notification._meta.get_field("recipient").max_length
    for channel, address in recipients.items():
        if address and len(address) > longest:
            raise ValueError(f"{channel} address is {len(address)} characters long; at most {longest} can be delivered")


def trigger_handoff_notified(*, trigger_id: int) -> bool:
    """Right after COMMIT, with TRIGGER_HANDOFF_VIA=notify (the default): nothing to do, the
    commit has notified the workers' listener. False: this process published nothing."""
    return False


def trigger_handoff(*, trigger_id: int) -> bool:
    """Right after COMMIT, with TRIGGER_HANDOFF_VIA=web: publish the dispatch task, bounded in
    time. True if published."""
    return task_publish_bounded(TRIGGER_DISPATCH_TASK, args=[trigger_id], headers={"request_id": request_id_get()})


def outbox_relay(*, batch_size: int = 500) -> int:
    """Hand over the oldest undispatched triggers whose time has come; returns how many.

    Safe to run from several processes at once: rows are claimed with
    `FOR UPDATE SKIP LOCKED` and leased (relay_after moves forward) before publishing, and
    published after the claim commits, so no lock is held while talking to the broker.

    A trigger already handed to the broker is published again only if it cannot still be
    waiting in the dispatch queue (`_relay_due`): when the workers run behind, the queue holds
    the newest hand-overs, and publishing those again would only lengthen it.
    """
    now = timezone.now()
    due = _relay_due(now)
    if due is None:
        return 0
    with transaction.atomic():
        ids = list(due.select_for_update(skip_locked=True).order_by("created_at", "id").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return 0
        NotificationTrigger.objects.filter(pk__in=ids).update(
            relay_after=now + timedelta(seconds=RELAY_LEASE_SECONDS), publish_count=F("publish_count") + 1, handed_over_at=now
        )
    published = 0
    for trigger_id in ids:
        try:
            task_publish(TRIGGER_DISPATCH_TASK, args=[trigger_id])
        except Exception as exc:
            # Broker gone mid-batch: give the rest back so the next run takes them at once.
            NotificationTrigger.objects.filter(pk__in=ids[published:], dispatched_at__isnull=True).update(relay_after=now)
            logger.warning("relay stopped after %d of %d triggers: %r", published, len(ids), exc)
            break
        published += 1
    logger.info("relay handed over %d triggers", published)
    return published


def _relay_due(now: datetime) -> QuerySet[NotificationTrigger] | None:
    """The triggers the relay should publish now, or None when there are none.

    Due: undispatched, not dead, past `relay_after`. Of those already handed over, only the ones
    handed over before the dispatch queue's oldest message: the queue is first in, first out,
    so if it holds N messages, they are at most the N newest hand-overs still undispatched, and
    an older undispatched one was lost (a broker restarted empty) or is with a worker. Without
    this, a queue more than OUTBOX_RELAY_GRACE behind had every trigger in it published twice
    (8,634 of 79,783 in one benchmark), which made it longer still. A broker that does not say
    how deep the queue is gets everything due, as before.
    """
    undispatched = NotificationTrigger.objects.filter(dispatched_at__isnull=True, dead_at__isnull=True)
    due = undispatched.filter(relay_after__lte=now)
    if not due.exists():
        return None
    queued = queue_depth(settings.CELERY_TASK_DEFAULT_QUEUE)
    if not queued:
        return due
    # With the notify hand-off a trigger without hand-over time was never published; the web's
    # hand-off does not record one, so there its creation stands for it.
    handover = F("handed_over_at") if settings.TRIGGER_HANDOFF_VIA == "notify" else Coalesce("handed_over_at", "created_at")
    newest_not_queued = (
        undispatched.annotate(handover=handover).filter(handover__isnull=False).order_by("-handover").values("handover")[queued : queued + 1]
    )
    return due.annotate(handover=handover).filter(Q(handover__isnull=True) | Q(handover__lte=Subquery(newest_not_queued)))
