"""Twilio Messages API (2010-04-01) over `notifications.vendors.http` (urllib3): one form-encoded POST per SMS.

Wire format (checked against /work/shared/vendor-specs/twilio_messages_v2010.json):
`POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`, form fields `To`, `Body`,
`MessagingServiceSid` (when configured) or else `From`, optional `StatusCallback`; HTTP basic
auth `account_sid:auth_token`; header `I-Twilio-Idempotency-Token` = the idempotency key, so a
resend to the same Twilio account is not delivered twice. 201 answers carry the message `sid`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from notifications.egress import Destination
from notifications.vendors import http
from notifications.vendors.base import OutboundMessage, VendorAdapter, VendorError, VendorResult, require, scrub

API_VERSION = "2010-04-01"
DEFAULT_BASE_URL = "https://api.twilio.com"
ACCOUNT_SID_RE = re.compile(r"^AC[0-9a-fA-F]{32}$")

# Twilio error codes (https://www.twilio.com/docs/errors/<code>) -> short description.
# Every code listed here is permanent: the same request cannot succeed later.
PERMANENT_CODES: dict[int, str] = {
    21211: "invalid 'To' number",
    21408: "sending to this region is not enabled",
    21610: "recipient unsubscribed (STOP)",
    21614: "'To' is not a mobile number",
    21602: "message body is required",
    21603: "'From' or 'MessagingServiceSid' is required",
    21612: "'To' is not reachable via SMS",
}
AUTH_FAILED_CODE = 20003
# Codes that are transient whatever the HTTP status says.
TRANSIENT_CODES: dict[int, str] = {20429: "too many requests"}


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
        if not settings.get("from_number") and not settings.get("messaging_service_sid"):
            errors["from_number"] = "from_number or messaging_service_sid is required"
        base_url = str(settings.get("base_url") or DEFAULT_BASE_URL)
        if not base_url.startswith(("https://", "http://")):
            errors["base_url"] = "must start with https:// or http://"
        return errors

    @classmethod
    def destinations(cls, settings: Mapping[str, Any]) -> dict[str, Destination]:
        return {"base_url": Destination.from_url(str(settings.get("base_url") or DEFAULT_BASE_URL))}

    def supports_idempotency(self) -> bool:
        return True

    def send(self, message: OutboundMessage) -> VendorResult:
        """POST one message; return its `sid`. Raises `VendorError` classified by Twilio's error code."""
        self.ensure_configured(message)
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
        body = http.json_or_empty(response)
        code = body.get("code")
        code = code if isinstance(code, int) else None
        vendor_code = str(code) if code is not None else None
        if code == AUTH_FAILED_CODE:
            detail = "20003 authentication failed: account_sid/auth_token rejected (configuration fault)"
            return http.error_for_status(
                response, label=self.label, detail=detail, vendor_code=vendor_code, permanent=True
            )
        if code in TRANSIENT_CODES:
            detail = f"{code} {TRANSIENT_CODES[code]}"
            return http.error_for_status(
                response, label=self.label, detail=detail, vendor_code=vendor_code, permanent=False
            )
        if code in PERMANENT_CODES:
            detail = f"{code} {PERMANENT_CODES[code]}"
            return http.error_for_status(
                response, label=self.label, detail=detail, vendor_code=vendor_code, permanent=True
            )
        # Unknown code: the HTTP status decides; Twilio's text often echoes the number, so mask it.
        text = scrub(str(body.get("message") or ""), message.to)[:200]
        detail = " ".join(part for part in (vendor_code, text) if part)
        return http.error_for_status(response, label=self.label, detail=detail, vendor_code=vendor_code)
