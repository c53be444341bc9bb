"""Endpoints the outside world calls: Twilio's inbound SMS (STOP, START, HELP), and the
one-click unsubscribe link of marketing email (RFC 8058).

Twilio signs each request with the account's auth token (`X-Twilio-Signature`); it is checked
with the official `twilio` package's RequestValidator against the token of the SMS vendor whose
`account_sid` sent it. An unsigned or wrongly signed request changes nothing (403).
"""

from __future__ import annotations

import logging
import re

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from notifications.consent import inbound_sms_handle, unsubscribe_by_token, unsubscribe_token_valid
from notifications.models import Channel, Vendor
from notifications.vendor_secrets import secrets_resolve

logger = logging.getLogger(__name__)

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def _twilio_auth_tokens(account_sid: str) -> list[str]:
    """The auth tokens of the Twilio SMS vendors configured with `account_sid`."""
    vendors = Vendor.objects.filter(channel=Channel.SMS, adapter="twilio", settings__account_sid=account_sid)
    return [token for vendor in vendors if (token := secrets_resolve(vendor.secrets_encrypted).get("auth_token"))]


@csrf_exempt
@require_POST
def twilio_sms_inbound(request: HttpRequest) -> HttpResponse:
    params = request.POST.dict()
    signature = request.headers.get("X-Twilio-Signature", "")
    url = request.build_absolute_uri()
    tokens = _twilio_auth_tokens(params.get("AccountSid", "")) if signature else []
    if not any(RequestValidator(token).validate(url, params, signature) for token in tokens):
        logger.warning("inbound SMS refused: signature missing or invalid", extra={"account_known": bool(tokens)})
        return HttpResponse("Invalid signature.", status=403, content_type="text/plain")
    from_number = params.get("From", "")
    if not _E164.match(from_number):
        return HttpResponse("From must be an E.164 number.", status=400, content_type="text/plain")
    reply = inbound_sms_handle(from_number=from_number, body=params.get("Body", ""))
    twiml = MessagingResponse()
    if reply:
        twiml.message(reply)
    return HttpResponse(str(twiml), content_type="text/xml")


# What a person who opens the link sees: a button, because a GET must change nothing (mail
# scanners fetch links); the mailbox provider's one-click POST (RFC 8058) unsubscribes at once.
_UNSUBSCRIBE_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Unsubscribe</title></head>
<body><form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<p>Stop receiving marketing email from us? Order and account messages still arrive.</p>
<button type="submit">Unsubscribe</button></form></body></html>"""


@csrf_exempt
def email_unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """One-click unsubscribe from marketing email (RFC 8058). GET shows a confirmation button;
    POST (the mailbox provider's `List-Unsubscribe=One-Click`, or that button) unsubscribes.
    A forged or unknown token changes nothing (404)."""
    if request.method == "GET":
        if unsubscribe_token_valid(token=token):
            return HttpResponse(_UNSUBSCRIBE_PAGE)
        return HttpResponse("This unsubscribe link is not valid.", status=404, content_type="text/plain")
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    if unsubscribe_by_token(token=token) is None:
        return HttpResponse("This unsubscribe link is not valid.", status=404, content_type="text/plain")
    return HttpResponse("You are unsubscribed from marketing email.", content_type="text/plain")
