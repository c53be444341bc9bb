"""Events from any system: `POST /api/v1/events/` writes a trigger exactly as a checkout does
(the outbox, one INSERT statement, handed over after COMMIT), for any registered event type.

The API's own pieces are the checkout's: API clients and their keys, Idempotency-Key records
(checkout/idempotency.py) and the per-client rate limit, so an event costs a client the same
budget as a checkout. That is why this module lives beside both apps: `notifications` never
imports `checkout`.

An event belongs to the API client that sent it: its trigger's `subject_ref` is
`event:<client id>:<event id>`, so reading it back needs the same client, with no extra column.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from checkout.exceptions import ApplicationError
from checkout.idempotency import StoredResponse, idempotency_abandon, idempotency_begin, idempotency_complete
from checkout.models import ApiClient, IdempotencyRecord
from notifications.models import Channel, NotificationTrigger
from notifications.outbox import trigger_publish
from notifications.selectors import notifications_for_subject
from notifications.template_cache import template_resolve

logger = logging.getLogger(__name__)

EVENT_ACCEPTED = 202


@dataclass(frozen=True)
class EventOutcome:
    status: int
    body: dict[str, Any]
    replayed: bool = False


def event_subject_ref(*, client_id: int, event_id: str) -> str:
    return f"event:{client_id}:{event_id}"


def event_publish(
    *,
    client: ApiClient,
    event_type: str,
    recipients: dict[str, str],
    locale: str,
    data: dict[str, Any],
    idempotency_key: str | None = None,
    fingerprint: str = "",
) -> EventOutcome:
    """Accept an event whose data already satisfied its event type's schema (the caller
    checked it); its notifications are created and sent by the workers.

    1. With an idempotency key: claim it, or return the stored answer (replay).
    2. Refuse it (ApplicationError 422 `template_missing`, nothing written, the key freed) when
       a channel it names has no active template for its locale or the locale's fallbacks:
       known now, instead of a notification that could only fail in a worker.
    3. Write the trigger (with an idempotency key, in one transaction with the stored answer)
       and hand it over after COMMIT, as `trigger_publish` does for a checkout.
    """
    record: IdempotencyRecord | None = None
    if idempotency_key:
        claimed = idempotency_begin(client=client, key=idempotency_key, fingerprint=fingerprint)
        if isinstance(claimed, StoredResponse):
            return EventOutcome(status=claimed.status, body=claimed.body, replayed=True)
        record = claimed
    try:
        return _check_and_record(client, event_type, recipients, locale, data, record)
    except BaseException:
        if record is not None:
            idempotency_abandon(record=record)
        raise


def _check_and_record(
    client: ApiClient,
    event_type: str,
    recipients: dict[str, str],
    locale: str,
    data: dict[str, Any],
    record: IdempotencyRecord | None,
) -> EventOutcome:
    untemplated = [
        channel for channel in recipients if template_resolve(event_type=event_type, channel=channel, locale=locale) is None
    ]
    if untemplated:
        raise ApplicationError(
            f"Event type '{event_type}' has no active template for {', '.join(untemplated)} in locale '{locale}' "
            "or its fallbacks: add one in the admin, or leave that channel out.",
            code="template_missing",
            status_code=422,
            extra={"channels": untemplated},
        )
    event_id = str(uuid.uuid4())
    with transaction.atomic() if record is not None else nullcontext():
        trigger = trigger_publish(
            event_type=event_type,
            locale=locale,
            payload=data,
            recipients=recipients,
            subject_ref=event_subject_ref(client_id=client.pk, event_id=event_id),
        )
        body = {
            "id": event_id,
            "event_type": event_type,
            "locale": locale,
            "channels": [channel for channel in Channel.values if channel in recipients],
            "created_at": (trigger.created_at or timezone.now()).isoformat().replace("+00:00", "Z"),
        }
        if record is not None:
            idempotency_complete(record=record, status=EVENT_ACCEPTED, body=body)
    logger.info("event accepted", extra={"event_type": event_type, "client_id": client.pk, "trigger_id": trigger.pk})
    return EventOutcome(status=EVENT_ACCEPTED, body=body)


def event_get(*, client: ApiClient, event_id: uuid.UUID) -> dict[str, Any] | None:
    """The caller's event and its notifications so far (none until a worker dispatched it),
    or None when `client` sent no event with that id."""
    subject_ref = event_subject_ref(client_id=client.pk, event_id=str(event_id))
    trigger = NotificationTrigger.objects.filter(subject_ref=subject_ref).first()
    if trigger is None:
        return None
    if trigger.dispatched_at is not None:
        state = "dispatched"
    elif trigger.dead_at is not None:
        state = "dead"
    else:
        state = "waiting"
    return {
        "id": str(event_id),
        "event_type": trigger.event_type,
        "locale": trigger.locale,
        "state": state,
        "created_at": trigger.created_at,
        "notifications": notifications_for_subject(subject_ref=subject_ref),
    }
