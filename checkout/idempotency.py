"""Idempotency-Key handling, as in Stripe's API and the IETF Idempotency-Key draft.

1. `idempotency_begin` claims the key in its own short transaction (so a concurrent request
   with the same key sees it at once and gets 409), or returns the stored answer to replay.
2. The checkout completes the record inside its own transaction (`idempotency_complete`),
   so the order and its replayable answer commit together.
3. If the request fails without a result worth replaying, `idempotency_abandon` frees the key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from checkout.exceptions import ApplicationError
from checkout.models import ApiClient, IdempotencyRecord

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


def request_fingerprint(data: Any) -> str:
    """A hash of the request's parsed body: the same JSON, however formatted, matches."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_key_validate(key: str) -> str:
    key = key.strip()
    # Printable ASCII only: a header's other bytes reach Django decoded as latin-1, so "é" would
    # be stored as "Ã©" and never match the same key sent again by a client that encodes it otherwise.
    if not key or len(key) > MAX_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        raise ApplicationError(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.", code="invalid_idempotency_key"
        )
    return key


def idempotency_begin(*, client: ApiClient, key: str, fingerprint: str) -> IdempotencyRecord | StoredResponse:
    """Claim `key` for this request (returns the record) or return the stored answer.

    Raises ApplicationError 422 when the key was used with another body, 409 while the
    first request with the key is still in flight.
    """
    now = timezone.now()
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(client=client, key=key, request_fingerprint=fingerprint)
    except IntegrityError:
        pass
    record = IdempotencyRecord.objects.filter(client=client, key=key).first()
    if record is None:  # deleted between our insert and read: the caller may simply retry
        raise ApplicationError("Request with this Idempotency-Key is in progress.", code="idempotency_conflict", status_code=409)
    expired = record.created_at < now - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    abandoned = record.completed_at is None and record.created_at < now - timedelta(
        seconds=settings.IDEMPOTENCY_IN_FLIGHT_TIMEOUT
    )
    if expired or abandoned:
        return _take_over(record, fingerprint=fingerprint, now=now)
    if record.request_fingerprint != fingerprint:
        raise ApplicationError(
            "This Idempotency-Key was already used with a different request body.",
            code="idempotency_key_reused",
            status_code=422,
        )
    if record.completed_at is None:
        raise ApplicationError(
            "A request with this Idempotency-Key is still being processed. Send it again (Retry-After); should that "
            f"request have died, the key is taken over {settings.IDEMPOTENCY_IN_FLIGHT_TIMEOUT} s after it began.",
            code="idempotency_conflict", status_code=409,
        )
    return StoredResponse(status=record.response_status or 200, body=record.response_body or {})


def _take_over(record: IdempotencyRecord, *, fingerprint: str, now: Any) -> IdempotencyRecord:
    """Reuse an expired or abandoned record; exactly one of several racing requests wins."""
    won = IdempotencyRecord.objects.filter(pk=record.pk, created_at=record.created_at).update(
        created_at=now, request_fingerprint=fingerprint, response_status=None, response_body=None, completed_at=None
    )
    if not won:
        raise ApplicationError("Request with this Idempotency-Key is in progress.", code="idempotency_conflict", status_code=409)
    record.refresh_from_db()
    return record


def idempotency_complete(*, record: IdempotencyRecord, status: int, body: dict[str, Any]) -> None:
    """Store the answer to replay. Call inside the transaction that commits the result."""
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        response_status=status, response_body=body, completed_at=timezone.now()
    )


def idempotency_abandon(*, record: IdempotencyRecord) -> None:
    """Free the key after a failure that left nothing to replay; safe to call twice."""
    IdempotencyRecord.objects.filter(pk=record.pk, completed_at__isnull=True).delete()


def idempotency_records_purge() -> int:
    """Delete records past their 24 hours; run by the housekeeping task."""
    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
