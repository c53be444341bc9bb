"""Twilio Messages API (2010-04-01) over `notifications.vendors.http` (urllib3): one form-encoded POST per SMS.

Wire format (Twilio's public OpenAPI description, `spec/json/twilio_api_v2010.json` in twilio/twilio-oai;
notifications/tests/test_third_party_judges.py checks requests against it with Prism):
`POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`, form fields `To`, `Body`,
`MessagingServiceSid` (when configured) or else `From`, optional `StatusCallback`; HTTP basic
auth `account_sid:auth_token`. 201 answers carry the message `sid`. The header
`I-Twilio-Idempotency-Token` carries the idempotency key, but Twilio does not dedupe creates by it
(it is a header Twilio sends on its own webhooks): a resend can deliver twice, so
`supports_idempotency()` is False. Instead Twilio can be asked (`accepted_lookup`): its message
list, filtered by `To` and `DateSent>`, shows whether a message whose answer was lost arrived.

Refusals are classified by cause (the code tables below): the recipient's or the message's
fault is permanent; the account's own (credentials, sender, messaging service, callback URL,
Geo permissions) is `misconfigured`, so the next vendor is tried and this one's breaker counts it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from notifications.egress import Destination
from notifications.vendors import http
from notifications.vendors.base import OutboundMessage, VendorAdapter, VendorError, VendorResult, require, scrub

API_VERSION = "2010-04-01"
DEFAULT_BASE_URL = "https://api.twilio.com"
ACCOUNT_SID_RE = re.compile(r"^AC[0-9a-fA-F]{32}$")

# Twilio error codes (https://www.twilio.com/docs/errors/<code>) -> short description, by cause.
# The recipient or the message is at fault: no vendor can deliver it (the notification fails).
PERMANENT_CODES: dict[int, str] = {
    21211: "invalid 'To' number",
    21610: "recipient unsubscribed (STOP)",
    21612: "'To' is not reachable via SMS",
    21614: "'To' is not a mobile number",
    21602: "message body is required",
    21617: "message body exceeds 1600 characters",
}
# The vendor's configuration is at fault: another vendor may be configured right (fail over,
# and the vendor's breaker counts it).
MISCONFIGURED_CODES: dict[int, str] = {
    20003: "authentication failed: account_sid/auth_token rejected",
    20404: "account or resource not found (check account_sid)",
    21212: "invalid 'From' number",
    # The account's Geo permissions, not the number: another vendor (account) may reach it.
    21408: "sending to this region is not enabled for the account",
    21603: "'From' or 'MessagingServiceSid' is required",
    21606: "'From' is not a number of this account",
    21609: "invalid StatusCallback URL",
    21701: "messaging service not found (check messaging_service_sid)",
}
# A lookup asks from this long before the attempt began: Twilio's clock and ours may differ, and
# its DateSent has whole seconds. The rendered body must match too, so a wider window is harmless.
LOOKUP_CLOCK_SKEW = timedelta(seconds=120)
# Messages per lookup page (Twilio's maximum is 1000), and pages read before giving up: one
# recipient rarely gets more than a handful of messages in minutes.
LOOKUP_PAGE_SIZE = 50
LOOKUP_MAX_PAGES = 4
# Codes that are transient whatever the HTTP status says.
TRANSIENT_CODES: dict[int, str] = {20429: "too many requests"}
# Request fields whose refusal blames the recipient or the message, not the vendor's settings;
# read from the `validation` list of OpenAPI validators (Prism answers 422 with one).
RECIPIENT_OR_MESSAGE_FIELDS = frozenset({"To", "Body"})
# Twilio refuses longer bodies (21617); checked here too, so no request is spent on them.
MAX_BODY_CHARS = 1600
E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
# An alphanumeric sender ID: up to 11 letters, digits and spaces, at least one letter.
ALPHANUMERIC_SENDER_RE = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
MESSAGING_SERVICE_SID_RE = re.compile(r"^MG[0-9a-fA-F]{32}$")


class TwilioAdapter(VendorAdapter):
    """SMS through Twilio; idempotent per Twilio account thanks to the idempotency token."""

    key = "twilio"
    channel = "sms"
    label = "Twilio"
    settings_fields = {
        "base_url": f"API root, default {DEFAULT_BASE_URL} (a sandbox URL in development).",
        "account_sid": "Account SID (AC followed by 32 hex digits).",
        "from_number": "Sender number in E.164; not needed when a messaging service is set.",
        "messaging_service_sid": "Messaging Service SID (MG...); used instead of from_number when set.",
        "status_callback": "Optional URL Twilio calls with delivery status updates.",
    }
    secret_fields = {"auth_token": "Auth token of the account."}
    destination_fields = ("base_url", "account_sid")

    @classmethod
    def destination(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "base_url": str(settings.get("base_url") or DEFAULT_BASE_URL).strip().rstrip("/"),
            "account_sid": settings.get("account_sid"),
        }

    @classmethod
    def validate_config(cls, settings: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, str]:
        errors: dict[str, str] = {}
        require(settings, ["account_sid"], errors)
        require(secrets, ["auth_token"], errors)
        if "account_sid" not in errors and not ACCOUNT_SID_RE.match(str(settings["account_sid"])):
            errors["account_sid"] = "must be AC followed by 32 hex digits"
        from_number, service_sid = settings.get("from_number"), settings.get("messaging_service_sid")
        if not from_number and not service_sid:
            errors["from_number"] = "from_number or messaging_service_sid is required"
        if from_number and not (E164_RE.match(str(from_number)) or ALPHANUMERIC_SENDER_RE.match(str(from_number))):
            errors["from_number"] = (
                "must be a phone number in E.164 (+15005550006) or an alphanumeric sender ID (up to 11 letters/digits)"
            )
        if service_sid and not MESSAGING_SERVICE_SID_RE.match(str(service_sid)):
            errors["messaging_service_sid"] = "must be MG followed by 32 hex digits"
        if error := absolute_url_error(settings.get("base_url") or DEFAULT_BASE_URL):
            errors["base_url"] = error
        if settings.get("status_callback") and (error := absolute_url_error(settings["status_callback"])):
            errors["status_callback"] = error
        return errors

    @classmethod
    def destinations(cls, settings: Mapping[str, Any]) -> dict[str, Destination]:
        return {"base_url": Destination.from_url(str(settings.get("base_url") or DEFAULT_BASE_URL))}

    def accepted_lookup(self, message: OutboundMessage, *, since: datetime) -> list[str]:
        """The sids of messages to `message.to` with `message.text` as body, sent (or, still
        queued, created) at or after `since`. Pages through Twilio's list by its
        `next_page_uri` (PageToken), at most LOOKUP_MAX_PAGES pages. Raises `VendorError` when
        Twilio does not answer, answers an error, or holds more than those pages can show."""
        self.ensure_configured(message)
        account_sid = str(self.settings["account_sid"])
        base_url = str(self.settings.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        earliest = since.astimezone(UTC) - LOOKUP_CLOCK_SKEW
        query = urlencode({"To": message.to, "DateSent>": earliest.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "PageSize": LOOKUP_PAGE_SIZE})
        next_uri: str | None = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json?{query}"
        sids: list[str] = []
        # One time budget for every page, as for a send: the caller's lease counts on it.
        deadline = time.monotonic() + self.timeout
        for _page in range(LOOKUP_MAX_PAGES):
            if next_uri is None:
                return sids
            left = deadline - time.monotonic()
            if left <= 0:
                raise VendorError(f"{self.label}: lookup ran out of time after {self.timeout:g}s")
            # Twilio answers paths; an absolute link is followed only to the same server.
            url = next_uri if "://" in next_uri else base_url + next_uri
            if urlsplit(url).netloc != urlsplit(base_url).netloc:
                raise VendorError(f"{self.label}: lookup's next page is on another host; not followed")
            response = http.get(session_key=self.key, label=self.label, url=url, timeout=left,
                                auth=(account_sid, self._secrets["auth_token"]))
            if response.status_code != 200:
                raise self._error(response, message)
            page = http.json_or_empty(response)
            sids += [str(item.get("sid")) for item in page.get("messages") or []
                     if isinstance(item, dict) and _same_message(item, message, earliest)]
            next_uri = page.get("next_page_uri") if isinstance(page.get("next_page_uri"), str) else None
        if next_uri is not None:
            raise VendorError(f"{self.label}: lookup found more than {LOOKUP_MAX_PAGES} pages of messages")
        return sids

    def send(self, message: OutboundMessage) -> VendorResult:
        """POST one message; return its `sid`. Raises `VendorError` classified by Twilio's error code."""
        self.ensure_configured(message)
        if len(message.text) > MAX_BODY_CHARS:
            raise VendorError(
                f"{self.label}: message body is {len(message.text)} characters, Twilio takes at most {MAX_BODY_CHARS}",
                permanent=True,
            )
        account_sid = str(self.settings["account_sid"])
        base_url = str(self.settings.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        response = http.post(
            session_key=self.key,
            label=self.label,
            url=f"{base_url}/{API_VERSION}/Accounts/{account_sid}/Messages.json",
            timeout=self.timeout,
            headers={
                "Accept": "application/json",
                "I-Twilio-Idempotency-Token": message.idempotency_key,
                "X-Request-ID": message.request_id,
            },
            data=self._form(message),
            auth=(account_sid, self._secrets["auth_token"]),
        )
        if not 200 <= response.status_code < 300:
            raise self._error(response, message)
        # Accepted. A 2xx without a sid is still an acceptance: raising would resend it.
        sid = http.json_or_empty(response).get("sid")
        return VendorResult(message_id=str(sid or ""), status_code=response.status_code)

    def _form(self, message: OutboundMessage) -> dict[str, str]:
        form = {"To": message.to, "Body": message.text}
        if service_sid := self.settings.get("messaging_service_sid"):
            form["MessagingServiceSid"] = str(service_sid)
        else:
            form["From"] = str(self.settings["from_number"])
        if callback := self.settings.get("status_callback"):
            form["StatusCallback"] = str(callback)
        return form

    def _error(self, response: http.HttpAnswer, message: OutboundMessage) -> VendorError:
        """Classify a refusal by its cause: Twilio's error code first, then (for validators that
        answer without one) the request fields refused, then the HTTP status."""
        body = http.json_or_empty(response)
        code = body.get("code")
        code = code if isinstance(code, int) else None
        vendor_code = str(code) if code is not None else None
        text = scrub(str(body.get("message") or body.get("detail") or ""), message.to)[:200]

        def error(description: str, **cause: bool) -> VendorError:
            detail = " ".join(part for part in (vendor_code, description) if part)
            if text and text not in description:
                detail += f": {text}" if description else text
            return http.error_for_status(response, label=self.label, detail=detail, vendor_code=vendor_code, **cause)

        if code in TRANSIENT_CODES:
            return error(TRANSIENT_CODES[code], permanent=False, misconfigured=False)
        if code in PERMANENT_CODES:
            return error(PERMANENT_CODES[code], permanent=True, misconfigured=False)
        if code in MISCONFIGURED_CODES:
            return error(f"{MISCONFIGURED_CODES[code]} (configuration fault)", permanent=False, misconfigured=True)
        refused = refused_fields(body)
        if code is None and 400 <= response.status_code < 500 and refused:
            fields = ", ".join(sorted(refused))
            if refused & RECIPIENT_OR_MESSAGE_FIELDS:
                return error(f"refused {fields}", permanent=True, misconfigured=False)
            return error(f"refused {fields} (configuration fault)", permanent=False, misconfigured=True)
        # Unknown code: the HTTP status decides; Twilio's text often echoes the number, so it is masked.
        return error("")


def refused_fields(body: Mapping[str, Any]) -> set[str]:
    """The request fields an OpenAPI validator (Prism: `{"validation": [{"location": ["body",
    "MessagingServiceSid"], ...}]}`) says it refused; empty for any other answer."""
    validation = body.get("validation")
    if not isinstance(validation, list):
        return set()
    fields = set()
    for problem in validation:
        location = problem.get("location") if isinstance(problem, dict) else None
        if isinstance(location, list) and location and isinstance(location[-1], str):
            fields.add(location[-1])
    return fields


def absolute_url_error(url: object) -> str | None:
    """Why `url` is not an absolute http(s) URL with a host (Twilio refuses the others), or None."""
    parts = urlsplit(str(url))
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an absolute URL starting with https:// or http://, with a host"
    if "_" in parts.hostname:
        return "the host may not contain underscores (Twilio refuses them)"
    return None


def _same_message(item: Mapping[str, Any], message: OutboundMessage, earliest: datetime) -> bool:
    """Is the listed message `message`: same recipient and body, sent (or created, when Twilio
    has not sent it yet) at or after `earliest`."""
    if item.get("to") != message.to or item.get("body") != message.text:
        return False
    stamp = item.get("date_sent") or item.get("date_created")
    try:
        return parsedate_to_datetime(str(stamp)) >= earliest
    except (TypeError, ValueError):
        return True  # a listed message with an unreadable date: count it rather than send twice
