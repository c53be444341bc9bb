"""Recipients' consent: the suppression list, checked before any vendor call.

The rule (README, "Consent"):
- Scope `all` stops every message on the channel, transactional ones included: an SMS STOP
  (or START's absence after it), Twilio's 21610 (the carrier says the number opted out), a hard
  bounce (the address does not exist), or an operator's entry.
- Scope `marketing` stops only events whose type is `marketing`: a one-click unsubscribe
  (RFC 8058). An order confirmation still goes by email to an address that unsubscribed from
  marketing; nothing goes by SMS to a number that sent STOP.

Suppressions are matched by an HMAC of the normalised address (`address_hash`), so one
survives the erasure of the address itself (retention.py). Every change is logged without
the address.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from functools import cache

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse

from notifications.lifecycle import notification_settle_suppressed
from notifications.models import (
    Channel,
    Notification,
    Suppression,
    SuppressionScope,
    SuppressionSource,
)
from notifications.statements import consent_read
from notifications.vendors.base import VendorError

logger = logging.getLogger(__name__)

# Twilio's error code for a message to a number that replied STOP (the carrier refuses it).
TWILIO_UNSUBSCRIBED = "21610"
# SMTP replies to RCPT TO that mean the mailbox does not exist or cannot exist (a hard bounce);
# others (552 mailbox full, 554 policy) may pass, so they are not suppressed.
HARD_BOUNCE_REPLY_CODES = frozenset({550, 551, 553})
UNSUBSCRIBE_SALT = "beacon.consent.unsubscribe"


@cache
def _hash_key() -> bytes:
    configured = settings.PERSONAL_DATA_HASH_KEY
    if configured:
        return configured.encode()
    return hashlib.sha256(b"beacon-personal-data-hash:" + settings.SECRET_KEY.encode()).digest()


def address_normalize(*, channel: str, address: str) -> str:
    """The form an address is compared in: emails lower-cased, numbers as given (E.164)."""
    address = address.strip()
    return address.lower() if channel == Channel.EMAIL else address


def address_hash(*, channel: str, address: str) -> str:
    """HMAC-SHA256 of the channel and normalised address (hex): stable while
    PERSONAL_DATA_HASH_KEY (or SECRET_KEY, if unset) is; not reversible without the key."""
    normalized = f"{channel}:{address_normalize(channel=channel, address=address)}"
    return hmac.new(_hash_key(), normalized.encode(), hashlib.sha256).hexdigest()


def suppression_add(
    *, channel: str, address: str, source: str, scope: str = SuppressionScope.ALL, note: str = ""
) -> Suppression:
    """Put `address` on the channel's suppression list for `scope`; idempotent (an existing
    entry is kept as it is, with its first source and time)."""
    digest = address_hash(channel=channel, address=address)
    normalized = address_normalize(channel=channel, address=address)
    try:
        with transaction.atomic():
            suppression, created = Suppression.objects.get_or_create(
                channel=channel, address_hash=digest, scope=scope,
                defaults={"address": normalized, "source": source, "note": note[:200]},
            )
    except IntegrityError:  # a concurrent add won the race: theirs stands
        suppression, created = Suppression.objects.get(channel=channel, address_hash=digest, scope=scope), False
    if created:
        logger.info("suppression added", extra={"channel": channel, "source": source, "scope": scope, "suppression_id": suppression.pk})
    return suppression


def suppression_remove(*, channel: str, address: str, sources: tuple[str, ...]) -> int:
    """Take `address` off the channel's list where it was put by one of `sources` (an SMS START
    lifts a STOP, never a hard bounce or an operator's entry); returns how many were removed."""
    digest = address_hash(channel=channel, address=address)
    removed, _ = Suppression.objects.filter(channel=channel, address_hash=digest, source__in=sources).delete()
    if removed:
        logger.info("suppression lifted", extra={"channel": channel, "removed": removed})
    return removed


def notifications_consent_read(*, notifications: list[Notification]) -> None:
    """Read the consent of notifications of one event (one dispatch's sends) in one statement,
    for `notification_suppressed`: each instance keeps whether its event is marketing
    (`is_marketing`, for `unsubscribe_headers`) and the source of the suppression covering its
    recipient (`suppressed_by`, or None). A dispatch reads it for all its sends just before the
    first vendor call; a send run alone reads its own (one statement either way)."""
    if not notifications:
        return
    marketing, sources = consent_read(
        event_type=notifications[0].event_type,
        addresses=[(n.channel, address_hash(channel=n.channel, address=n.recipient)) for n in notifications],
    )
    for notification, source in zip(notifications, sources, strict=True):
        notification.is_marketing, notification.suppressed_by = marketing, source


def notification_suppressed(*, notification: Notification) -> bool:
    """If the recipient is suppressed for this notification (its channel, and a scope that
    covers its event type's category), settle it `suppressed` and return True; no vendor may
    then be called. Uses the answer `notifications_consent_read` left on the instance, or reads
    it (one statement). Called by the send flow before any vendor call."""
    if not hasattr(notification, "suppressed_by"):
        notifications_consent_read(notifications=[notification])
    source = notification.suppressed_by
    if source is None:
        return False
    notification_settle_suppressed(
        notification=notification, reason=f"Recipient suppressed ({SuppressionSource(source).label}); no vendor called."
    )
    logger.info("notification suppressed", extra={"notification_id": notification.pk, "source": source})
    return True


def unsubscribe_token(*, notification: Notification) -> str:
    """A signed token naming the notification (its public id, not the address): the one-click
    unsubscribe link of its email. It does not expire (RFC 8058 links must keep working)."""
    return signing.dumps(str(notification.public_id), salt=UNSUBSCRIBE_SALT)


def unsubscribe_headers(*, notification: Notification) -> tuple[tuple[str, str], ...]:
    """`List-Unsubscribe` (an https link with the signed token) and `List-Unsubscribe-Post`
    (RFC 8058 one-click) for a marketing email, once `notification_suppressed` has found it
    marketing; nothing for transactional messages, SMS, or without PUBLIC_BASE_URL."""
    if notification.channel != Channel.EMAIL or not getattr(notification, "is_marketing", False) or not settings.PUBLIC_BASE_URL:
        return ()
    url = settings.PUBLIC_BASE_URL + reverse("email-unsubscribe", args=[unsubscribe_token(notification=notification)])
    return (("List-Unsubscribe", f"<{url}>"), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))


def unsubscribe_token_valid(*, token: str) -> bool:
    try:
        signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return False
    return True


def unsubscribe_by_token(*, token: str) -> Suppression | None:
    """Unsubscribe the recipient of the email whose link carried `token` from marketing email
    (scope `marketing`: transactional email still goes). Idempotent. None when the token is
    forged, or names no email whose address is still kept."""
    try:
        public_id = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    notification = Notification.objects.filter(public_id=public_id, channel=Channel.EMAIL).exclude(recipient="").first()
    if notification is None:
        return None
    return suppression_add(
        channel=Channel.EMAIL, address=notification.recipient, source=SuppressionSource.UNSUBSCRIBE, scope=SuppressionScope.MARKETING
    )


def suppression_from_vendor_refusal(*, channel: str, address: str, error: VendorError) -> Suppression | None:
    """A permanent refusal that means the recipient can never be reached: Twilio's 21610 (the
    number sent STOP to the carrier) or a hard bounce. Puts the address on the list (scope
    `all`); returns the entry, or None for any other refusal."""
    if not error.permanent:
        return None
    if channel == Channel.SMS and error.vendor_code == TWILIO_UNSUBSCRIBED:
        return suppression_add(channel=channel, address=address, source=SuppressionSource.CARRIER_OPT_OUT)
    # Only a refused RCPT TO: a 550 after DATA refuses the message (content, policy), not the address.
    if channel == Channel.EMAIL and error.status_code in HARD_BOUNCE_REPLY_CODES and "recipient refused" in str(error):
        return suppression_add(channel=channel, address=address, source=SuppressionSource.HARD_BOUNCE)
    return None



# Twilio's default keywords (its Advanced Opt-Out), compared with the whole message, trimmed
# and upper-cased.
SMS_STOP_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
SMS_START_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
SMS_HELP_KEYWORDS = frozenset({"HELP", "INFO"})


def inbound_sms_handle(*, from_number: str, body: str) -> str | None:
    """An SMS a recipient sent us: STOP (and Twilio's other opt-out words) suppresses every
    SMS to the number; START lifts an SMS STOP or a carrier opt-out; HELP is answered with
    SMS_HELP_REPLY. Returns the reply to send back, or None; any other text is ignored."""
    keyword = body.strip().upper()[:20]
    if keyword in SMS_STOP_KEYWORDS:
        suppression_add(channel=Channel.SMS, address=from_number, source=SuppressionSource.SMS_STOP)
    elif keyword in SMS_START_KEYWORDS:
        suppression_remove(
            channel=Channel.SMS, address=from_number, sources=(SuppressionSource.SMS_STOP, SuppressionSource.CARRIER_OPT_OUT)
        )
    elif keyword in SMS_HELP_KEYWORDS:
        return settings.SMS_HELP_REPLY
    return None
