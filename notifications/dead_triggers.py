"""Triggers that keep failing to dispatch: counted, given up after a few tries, retried by hand.

The relay hands an undispatched trigger to the workers again every RELAY_LEASE_SECONDS. Without
a stop, a trigger whose dispatch always fails (or, before the render budget, never finished)
was republished forever and piled up in every worker. A dispatch started after a relay
hand-over counts itself on the trigger (`dispatch_attempts`); the one that finds the count
past TRIGGER_MAX_DISPATCH_ATTEMPTS marks the trigger dead instead of trying again. A dead
trigger is left alone by the relay and by any message still queued for it, counted in
`beacon_triggers_dead_total` and `beacon_outbox_dead_triggers` (alert BeaconTriggersDead),
and listed in the admin, where an operator can dispatch it again.

Only attempts count, not hand-overs: a trigger that waits because every worker is down is
republished but never tried, so it is not given up.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from notifications import metrics
from notifications.models import NotificationTrigger

logger = logging.getLogger(__name__)

# last_error keeps this many characters of an exception's text.
ERROR_TEXT_LIMIT = 2000


def trigger_dispatch_attempt_begin(*, trigger: NotificationTrigger) -> bool:
    """Count a dispatch attempt of a relay-published trigger; False if it must not be tried.

    Call before creating the trigger's notifications, only for a trigger that is undispatched
    and was handed over by the relay (`publish_count` > 0). Returns False, having marked the
    trigger dead, when this attempt is one more than TRIGGER_MAX_DISPATCH_ATTEMPTS; also False
    when another dispatch finished it (or gave it up) meanwhile.
    """
    attempts = (
        NotificationTrigger.objects.filter(pk=trigger.pk, dispatched_at__isnull=True, dead_at__isnull=True)
        .update(dispatch_attempts=F("dispatch_attempts") + 1)
    )
    if not attempts:
        return False
    trigger.refresh_from_db(fields=["dispatch_attempts", "last_error"])
    if trigger.dispatch_attempts <= settings.TRIGGER_MAX_DISPATCH_ATTEMPTS:
        return True
    tried = trigger.dispatch_attempts - 1
    reason = f"Gave up after {tried} dispatch attempts; last error: {trigger.last_error or 'none recorded (worker lost?)'}"
    NotificationTrigger.objects.filter(pk=trigger.pk, dead_at__isnull=True).update(
        dead_at=timezone.now(), last_error=reason[:ERROR_TEXT_LIMIT]
    )
    metrics.TRIGGERS_DEAD.labels(event_type=trigger.event_type).inc()
    logger.error("trigger is dead: %s", reason, extra={"trigger_id": trigger.pk, "event_type": trigger.event_type})
    return False


def trigger_dispatch_failure_record(*, trigger_id: int, error: BaseException) -> None:
    """Keep why a dispatch failed, for the dead state's reason. Best effort: never raises."""
    text = f"{type(error).__name__}: {error}"[:ERROR_TEXT_LIMIT]
    try:
        NotificationTrigger.objects.filter(pk=trigger_id, dispatched_at__isnull=True).update(last_error=text)
    except Exception as exc:  # the database may be what failed
        logger.warning("could not record the dispatch failure of trigger %s: %s", trigger_id, type(exc).__name__)


def triggers_redispatch(*, trigger_ids: list[int], requested_by: str = "") -> int:
    """Bring dead triggers back: attempts reset, handed to the relay at once. Returns how many."""
    revived = NotificationTrigger.objects.filter(pk__in=trigger_ids, dead_at__isnull=False, dispatched_at__isnull=True).update(
        dead_at=None, dispatch_attempts=0, publish_count=0, relay_after=timezone.now()
    )
    logger.info("%d dead trigger(s) handed to the relay again by %s", revived, requested_by or "?")
    return revived
