"""Endpoints vendors call with delivery receipts: Twilio's status callbacks and ESPs' tracking
webhooks (django-anymail). Thin: authenticate, map the vendor's words, call `receipt_record`.

- Twilio: `POST /webhooks/twilio/status/`, form-encoded, signed with the account's auth token
  in `X-Twilio-Signature` (checked with the official `twilio` package's RequestValidator against
  the URL Twilio was given: PUBLIC_BASE_URL + path when set). Unsigned or wrongly signed: 403,
  nothing changes. The URL is named in every send's `StatusCallback` (twilio_status_callback_url).
- ESPs: `POST /webhooks/esp/<vendor id>/tracking/`, parsed by anymail's own tracking view of the
  vendor's ESP, authenticated with that vendor's `webhook_secret` (basic auth): 403 otherwise.

A Twilio request seen before (its `I-Twilio-Idempotency-Token`, which Twilio sets per callback
and keeps on its own retries of a failed one) is a replay: refused with 409, nothing changes. A
receipt stored before under another request (a vendor reporting the same status twice) is
answered 200 and changes nothing (receipts.py stores it once). A receipt for a message Beacon
does not know is answered 404.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from anymail.exceptions import AnymailError, AnymailWebhookValidationFailure
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from notifications.models import Channel, Vendor
from notifications.receipt_mapping import ANYMAIL_EVENT_TYPE, TWILIO_MESSAGE_STATUS
from notifications.receipts import Receipt, receipt_record
from notifications.vendor_secrets import secrets_resolve
from notifications.vendors.anymail_esp import ESPS

logger = logging.getLogger(__name__)

# A tracking webhook carries at most this many events (SendGrid batches); more is refused.
MAX_EVENTS_PER_WEBHOOK = 1000


def twilio_status_callback_url() -> str:
    """The StatusCallback URL each Twilio send names; "" when PUBLIC_BASE_URL is not set."""
    base = settings.PUBLIC_BASE_URL
    return f"{base}{reverse('twilio-status-callback')}" if base else ""


def _text(status: int, body: str) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="text/plain")


def _answer(result_status: str) -> HttpResponse:
    if result_status == "unknown_message":
        return _text(404, "Unknown message.")
    if result_status == "replayed":
        return _text(409, "This request was received before: refused.")
    return _text(200, "Already recorded." if result_status == "duplicate" else "Recorded.")


def _signed_url(request: HttpRequest) -> str:
    base = settings.PUBLIC_BASE_URL
    return f"{base}{request.get_full_path()}" if base else request.build_absolute_uri()


@csrf_exempt
@require_POST
def twilio_status_callback(request: HttpRequest) -> HttpResponse:
    params = request.POST.dict()
    signature = request.headers.get("X-Twilio-Signature", "")
    account_sid = params.get("AccountSid", "")
    vendors = list(Vendor.objects.filter(channel=Channel.SMS, adapter="twilio", settings__account_sid=account_sid)) \
        if signature else []
    url = _signed_url(request)
    vendor = next((v for v in vendors if (token := secrets_resolve(v.secrets_encrypted).get("auth_token"))
                   and RequestValidator(token).validate(url, params, signature)), None)
    if vendor is None:
        logger.warning("Twilio status callback refused: signature missing or invalid",
                       extra={"account_known": bool(vendors)})
        return _text(403, "Invalid signature.")
    status = params.get("MessageStatus", "")
    if status not in TWILIO_MESSAGE_STATUS or not params.get("MessageSid"):
        return _text(400, "MessageSid and a known MessageStatus are required.")
    receipt = Receipt(vendor_message_id=params["MessageSid"], vendor_status=status,
                      state=TWILIO_MESSAGE_STATUS[status], vendor_code=params.get("ErrorCode", ""),
                      occurred_at=_twilio_done_date(params.get("RawDlrDoneDate", "")))
    # Messages of one account may go out through several vendor rows of it: the one that sent it.
    token = request.headers.get("I-Twilio-Idempotency-Token", "")
    for candidate in [vendor, *(v for v in vendors if v.pk != vendor.pk)]:
        result = receipt_record(vendor=candidate, receipt=receipt, request_token=token)
        if result.status != "unknown_message":
            break
    return _answer(result.status)


def _twilio_done_date(raw: str) -> datetime | None:
    """Twilio's `RawDlrDoneDate` (the carrier's YYMMDDhhmm, UTC), or None."""
    try:
        return datetime.strptime(raw, "%y%m%d%H%M").replace(tzinfo=UTC) if raw else None
    except ValueError:
        return None


@csrf_exempt
@require_POST
def esp_tracking_webhook(request: HttpRequest, vendor_id: int) -> HttpResponse:
    vendor = Vendor.objects.filter(pk=vendor_id, adapter="anymail").first()
    esp = ESPS.get(str(vendor.settings.get("esp"))) if vendor else None
    if vendor is None or esp is None:
        return _text(404, "Unknown ESP vendor.")
    secret = secrets_resolve(vendor.secrets_encrypted).get("webhook_secret", "")
    if not secret:
        # anymail would accept an unauthenticated webhook with a warning; Beacon refuses it.
        return _text(403, "This vendor has no webhook_secret: set one and register it at the ESP.")
    view = import_string(esp.tracking_view)(webhook_secret=[secret])
    try:
        view.run_validators(request)
    except AnymailWebhookValidationFailure:
        logger.warning("ESP tracking webhook refused: authentication failed", extra={"vendor": vendor.name})
        return _text(403, "Authentication failed.")
    try:
        events = view.parse_events(request)
    except (AnymailError, ValueError, KeyError, TypeError):
        return _text(400, "Not a tracking event of this ESP.")
    if len(events) > MAX_EVENTS_PER_WEBHOOK:
        return _text(413, f"At most {MAX_EVENTS_PER_WEBHOOK} events per request.")
    statuses = []
    for event in events:
        state = ANYMAIL_EVENT_TYPE.get(str(event.event_type))
        if state is None or not event.message_id:
            continue  # says nothing about delivery (unsubscribed, unknown, ...)
        receipt = Receipt(vendor_message_id=str(event.message_id), vendor_status=str(event.event_type),
                          state=state, vendor_code=_esp_code(event), description=str(event.description or ""),
                          occurred_at=event.timestamp)
        statuses.append(receipt_record(vendor=vendor, receipt=receipt).status)
    if statuses and all(status == "unknown_message" for status in statuses):
        return _answer("unknown_message")
    return _answer("duplicate" if statuses and all(s == "duplicate" for s in statuses) else "recorded")


def _esp_code(event) -> str:
    """The ESP's own word for a bounce or complaint (Postmark's `Type`, e.g. HardBounce), else
    anymail's reject reason."""
    esp_event = event.esp_event if isinstance(event.esp_event, dict) else {}
    return str(esp_event.get("Type") or event.reject_reason or "")
