"""Signed JSON webhook: hands the rendered message to an HTTP endpoint that delivers it.

Request: `POST {url}` with the JSON object {channel, to, subject, text, html, idempotency_key}
(keys sorted, compact), headers `X-Beacon-Timestamp: <unix seconds>`,
`X-Beacon-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}" with signing_secret>`,
`Idempotency-Key`, `X-Request-ID`. The receiver should reject stale timestamps and dedupe by
`Idempotency-Key`; `supports_idempotency()` relies on that contract.

Answer: any 2xx is an acceptance; the message id is the JSON answer's "id" when present, else
the idempotency key. Non-2xx answers follow the default HTTP mapping in `http.py`.

One class per channel (`webhook_email`, `webhook_sms`) rather than a channel "any": a Vendor
row belongs to one channel, and the send service can check `adapter.channel` against it with no
special case.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from notifications.egress import Destination
from notifications.vendors import http
from notifications.vendors.base import OutboundMessage, VendorAdapter, VendorResult, require

SIGNATURE_HEADER = "X-Beacon-Signature"
TIMESTAMP_HEADER = "X-Beacon-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Beacon-Signature` value for `body` sent at `timestamp` (also used by receivers' tests)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookAdapter(VendorAdapter):
    """Base of the two webhook adapters; only `key`, `channel` and `label` differ."""

    settings_fields = {"url": "Endpoint receiving the signed JSON POST (https:// in production)."}
    secret_fields = {"signing_secret": "Shared secret for the HMAC-SHA256 signature."}
    destination_fields = ("url",)

    @classmethod
    def validate_config(cls, settings: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, str]:
        errors: dict[str, str] = {}
        require(settings, ["url"], errors)
        require(secrets, ["signing_secret"], errors)
        if "url" not in errors and not str(settings["url"]).startswith(("https://", "http://")):
            errors["url"] = "must start with https:// or http://"
        return errors

    @classmethod
    def destinations(cls, settings: Mapping[str, Any]) -> dict[str, Destination]:
        return {"url": Destination.from_url(str(settings.get("url") or ""))}

    def supports_idempotency(self) -> bool:
        return True

    def send(self, message: OutboundMessage) -> VendorResult:
        """POST the signed message once; return the receiver's id (or the idempotency key)."""
        self.ensure_configured(message)
        payload = {
            "channel": message.channel,
            "to": message.to,
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
            "idempotency_key": message.idempotency_key,
        }
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        response = http.post(
            session_key=self.key,
            label=self.label,
            url=str(self.settings["url"]),
            timeout=self.timeout,
            headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self._secrets["signing_secret"], timestamp, body),
                "Idempotency-Key": message.idempotency_key,
                "X-Request-ID": message.request_id,
            },
            data=body,
        )
        if not 200 <= response.status_code < 300:
            raise http.error_for_status(response, label=self.label)
        message_id = http.json_or_empty(response).get("id") or message.idempotency_key
        return VendorResult(message_id=str(message_id), status_code=response.status_code)


class WebhookEmailAdapter(WebhookAdapter):
    key = "webhook_email"
    channel = "email"
    label = "Webhook (email)"


class WebhookSmsAdapter(WebhookAdapter):
    key = "webhook_sms"
    channel = "sms"
    label = "Webhook (SMS)"
