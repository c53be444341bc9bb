"""Personal data that expires, and the erasure of one person.

What is personal in `notifications`: a notification's recipient and rendered content, a
trigger's payload and recipients, a delivery attempt's error text (vendors quote the
recipient, masked, but still) and a suppression's address. Erasing keeps what operations
and reporting need: every row, its counts, states and times, and `consent.address_hash` of
the address (`Notification.recipient_hash`, `Suppression.address_hash`), so a suppression
(an SMS STOP) still matches after the address is gone.

- `personal_data_expire` (beat, hourly): what is older than PERSONAL_DATA_RETENTION_DAYS.
- `person_erase` (the `erase_personal_data` command, with the checkout's `orders_erase`):
  every trace of one email address or phone number, whatever its age.
Both log what they erased (counts, never the address).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from notifications.consent import address_hash
from notifications.lifecycle import notifications_fail_erased
from notifications.models import (
    Channel,
    DeliveryAttempt,
    Notification,
    NotificationTrigger,
    Suppression,
)

logger = logging.getLogger(__name__)

# Rows erased per statement: bounded transactions, however much expired at once.
ERASE_BATCH_SIZE = 1000


@dataclass
class Erased:
    notifications: int = 0
    attempts: int = 0
    triggers: int = 0
    suppressions: int = 0


def personal_data_expire(*, now: datetime | None = None) -> Erased:
    """Erase the personal data of notifications and triggers created more than
    PERSONAL_DATA_RETENTION_DAYS ago. Idempotent; safe to run from several processes (a row
    erased twice is erased the same way)."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.PERSONAL_DATA_RETENTION_DAYS)
    erased = _erase(
        notifications=Notification.objects.filter(created_at__lt=cutoff),
        triggers=NotificationTrigger.objects.filter(created_at__lt=cutoff),
    )
    logger.info("personal data expired", extra={"cutoff": cutoff.isoformat(), **asdict(erased)})
    return erased


def person_erase(*, email: str = "", phone: str = "") -> Erased:
    """Erase every trace of one person in `notifications`, found by email address (any case)
    and/or phone number: their notifications, attempts and triggers as on expiry, and the
    address of their suppressions (the suppression itself stays, matched by its hash)."""
    if not (email or phone):
        raise ValueError("person_erase needs an email address or a phone number")
    notifications, triggers, suppressions = Q(pk__in=[]), Q(pk__in=[]), Q(pk__in=[])
    if email:
        notifications |= Q(channel=Channel.EMAIL, recipient__iexact=email)
        triggers |= Q(recipients__email__iexact=email)
        suppressions |= Q(channel=Channel.EMAIL, address_hash=address_hash(channel=Channel.EMAIL, address=email))
    if phone:
        notifications |= Q(channel=Channel.SMS, recipient=phone)
        triggers |= Q(recipients__sms=phone)
        suppressions |= Q(channel=Channel.SMS, address_hash=address_hash(channel=Channel.SMS, address=phone))
    matched = NotificationTrigger.objects.filter(triggers)
    # Every notification of their triggers too: a trigger's other channel is theirs as well.
    theirs = Notification.objects.filter(notifications | Q(trigger__in=matched.values("pk")))
    # Nothing may be sent to an address that is about to be gone: waiting sends end here (one
    # in a vendor call now finishes; its row is erased by the next pass or the next expiry).
    notifications_fail_erased(theirs)
    erased = _erase(notifications=theirs, triggers=matched)
    erased.suppressions = Suppression.objects.filter(suppressions).exclude(address="").update(address="")
    logger.info("person erased", extra={"by_email": bool(email), "by_phone": bool(phone), **asdict(erased)})
    return erased


def _erase(*, notifications: QuerySet, triggers: QuerySet) -> Erased:
    erased = Erased()
    while True:
        with transaction.atomic():
            rows = list(
                notifications.exclude(recipient="", rendered_text="", rendered_subject="", rendered_html="")
                .select_for_update(skip_locked=True)
                .values_list("pk", "channel", "recipient")[:ERASE_BATCH_SIZE]
            )
            if not rows:
                break
            content = ["rendered_subject", "rendered_text", "rendered_html"]
            blank = dict.fromkeys(content, "")
            with_address = [
                Notification(pk=pk, recipient="", recipient_hash=address_hash(channel=channel, address=recipient), **blank)
                for pk, channel, recipient in rows
                if recipient
            ]
            # A row whose address went earlier keeps the hash it got then.
            without_address = [Notification(pk=pk, **blank) for pk, _, recipient in rows if not recipient]
            Notification.objects.bulk_update(with_address, ["recipient", "recipient_hash", *content])
            Notification.objects.bulk_update(without_address, content)
            ids = [pk for pk, _, _ in rows]
            erased.attempts += DeliveryAttempt.objects.filter(notification_id__in=ids).exclude(error="").update(error="")
            erased.notifications += len(rows)
    while True:
        ids = list(triggers.exclude(payload={}, recipients={}).values_list("pk", flat=True)[:ERASE_BATCH_SIZE])
        if not ids:
            break
        erased.triggers += NotificationTrigger.objects.filter(pk__in=ids).update(payload={}, recipients={})
    return erased
