"""Email through an email service provider's HTTP API, by django-anymail: one adapter for every
ESP anymail speaks (Postmark, SendGrid, Mailgun, Brevo, ...).

Each Vendor row names its ESP (`settings.esp`) and holds its own credentials, so several ESPs, or
two accounts of one, run side by side and fall back to each other like any vendors: the backend
is built per send with `get_connection(backend, <credential kwarg>=..., api_url=...)`, never from
global ANYMAIL settings. The ESP's tracking webhooks feed the receipts
(notifications/receipt_webhooks.py, `/webhooks/esp/<vendor id>/tracking/`), authenticated by the
vendor's own `webhook_secret` (basic auth `user:password`, as anymail's WEBHOOK_SECRET).

Errors are classified from anymail's exceptions and the ESP's answer (the tables below): the
recipient's fault is permanent, the account's is `misconfigured`, a lost connection after the
request went out is an unknown outcome, everything else transient. The API URL passes the egress
policy (notifications/egress.py) before each send; anymail connects through `requests`, which
resolves the name again (no pinning of the checked address, unlike the urllib3 adapters).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from anymail.exceptions import (
    AnymailAPIError,
    AnymailError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailRequestsAPIError,
)
from django.core.mail import EmailMultiAlternatives, get_connection

from notifications.egress import Destination, EgressRefused, egress_check
from notifications.vendors.base import OutboundMessage, VendorAdapter, VendorError, VendorResult, require, scrub


@dataclass(frozen=True)
class Esp:
    """One ESP as anymail knows it: its backend, its tracking webhook view, the backend kwarg
    that carries the API credential, and its default API root."""

    backend: str
    tracking_view: str
    credential_kwarg: str
    default_api_url: str


ESPS: dict[str, Esp] = {
    "postmark": Esp("anymail.backends.postmark.EmailBackend", "anymail.webhooks.postmark.PostmarkTrackingWebhookView",
                    "server_token", "https://api.postmarkapp.com/"),
    "sendgrid": Esp("anymail.backends.sendgrid.EmailBackend", "anymail.webhooks.sendgrid.SendGridTrackingWebhookView",
                    "api_key", "https://api.sendgrid.com/v3/"),
    "brevo": Esp("anymail.backends.brevo.EmailBackend", "anymail.webhooks.brevo.BrevoTrackingWebhookView",
                 "api_key", "https://api.brevo.com/v3/"),
    "sparkpost": Esp("anymail.backends.sparkpost.EmailBackend",
                     "anymail.webhooks.sparkpost.SparkPostTrackingWebhookView", "api_key",
                     "https://api.sparkpost.com/api/v1/"),
}

# Postmark's API ErrorCodes (https://postmarkapp.com/developer/api/overview#error-codes), by cause.
# The recipient or the message is at fault: no ESP can deliver it.
POSTMARK_PERMANENT_CODES: dict[int, str] = {
    300: "invalid email request (address or content)",
    406: "inactive recipient (hard bounce or spam complaint)",
}
# The account's configuration is at fault: another ESP vendor may be configured right.
POSTMARK_MISCONFIGURED_CODES: dict[int, str] = {
    10: "bad or missing server token",
    400: "sender signature not found",
    401: "sender signature not confirmed",
    405: "not allowed to send (account out of credits or paused)",
    412: "account pending approval: only same-domain recipients",
}
# HTTP statuses whatever the ESP: the account's fault, or a moment's.
MISCONFIGURED_STATUSES = frozenset({401, 403})
TRANSIENT_STATUSES = frozenset({408, 429})
# anymail's per-recipient statuses that mean the ESP refused the address itself.
REFUSED_RECIPIENT_STATUSES = frozenset({"invalid", "rejected"})


class AnymailEspAdapter(VendorAdapter):
    """Email through any ESP anymail supports; the ESP and its credentials come from the vendor row."""

    key = "anymail"
    channel = "email"
    label = "Email service provider (anymail)"
    settings_fields = {
        "esp": f"Which ESP: {', '.join(sorted(ESPS))}.",
        "api_url": "API root; empty for the ESP's own (a sandbox URL in development).",
        "from_email": "Sender address, e.g. Shop <orders@shop.example> (a sender the ESP account has verified).",
    }
    secret_fields = {
        "api_key": "The ESP's API credential (Postmark: the server token).",
        "webhook_secret": "user:password the ESP sends as basic auth on its tracking webhook.",
    }
    destination_fields = ("esp", "api_url")

    @classmethod
    def validate_config(cls, settings: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, str]:
        errors: dict[str, str] = {}
        require(settings, ["esp", "from_email"], errors)
        require(secrets, ["api_key"], errors)
        if "esp" not in errors and settings["esp"] not in ESPS:
            errors["esp"] = f"must be one of {', '.join(sorted(ESPS))}"
        api_url = settings.get("api_url")
        if api_url and not str(api_url).startswith(("https://", "http://")):
            errors["api_url"] = "must start with https:// or http://"
        webhook_secret = secrets.get("webhook_secret")
        if webhook_secret and ":" not in webhook_secret:
            errors["webhook_secret"] = "must be user:password"
        return errors

    @classmethod
    def destination(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        return {"esp": settings.get("esp"), "api_url": cls.api_url(settings)}

    @classmethod
    def destinations(cls, settings: Mapping[str, Any]) -> dict[str, Destination]:
        url = cls.api_url(settings)
        return {"api_url": Destination.from_url(url)} if url else {}

    @staticmethod
    def api_url(settings: Mapping[str, Any]) -> str:
        esp = ESPS.get(str(settings.get("esp") or ""))
        url = str(settings.get("api_url") or (esp.default_api_url if esp else "")).strip()
        return url if not url or url.endswith("/") else url + "/"

    def send(self, message: OutboundMessage) -> VendorResult:
        """Send through the vendor's ESP; return the ESP's message id. Raises a classified `VendorError`."""
        self.ensure_configured(message)
        esp = ESPS[str(self.settings["esp"])]
        api_url = self.api_url(self.settings)
        try:
            egress_check(Destination.from_url(api_url))
        except EgressRefused as exc:
            raise VendorError(f"{self.label}: API URL refused by the egress policy: {exc}", misconfigured=True) from None
        connection = get_connection(esp.backend, fail_silently=False, api_url=api_url, timeout=self.timeout,
                                    **{esp.credential_kwarg: self._secrets["api_key"]})
        email = EmailMultiAlternatives(subject=message.subject, body=message.text,
                                       from_email=str(self.settings["from_email"]), to=[message.to],
                                       headers={**dict(message.headers), "X-Request-ID": message.request_id},
                                       connection=connection)
        if message.html:
            email.attach_alternative(message.html, "text/html")
        try:
            email.send()
        except AnymailError as exc:
            raise self._error(exc, message) from None
        status = email.anymail_status
        recipient = status.recipients.get(message.to)
        if recipient is not None and recipient.status in REFUSED_RECIPIENT_STATUSES:
            raise VendorError(f"{self.label}: the ESP refused the recipient ({recipient.status})", permanent=True)
        return VendorResult(message_id=str(status.message_id or ""), status_code=200)

    def _error(self, exc: AnymailError, message: OutboundMessage) -> VendorError:
        """Classify anymail's exception: refused recipients, then the ESP's error code, then the
        HTTP status; a request that went out but got no answer is an unknown outcome."""
        if isinstance(exc, AnymailRecipientsRefused | AnymailInvalidAddress):
            return VendorError(f"{self.label}: the recipient's address is refused ({type(exc).__name__})",
                               permanent=True)
        cause = exc.__cause__
        if isinstance(exc, AnymailRequestsAPIError) and exc.response is None:
            if isinstance(cause, requests.ConnectTimeout | requests.ConnectionError) and not isinstance(
                cause, requests.ReadTimeout
            ) and "RemoteDisconnected" not in repr(cause):
                return VendorError(f"{self.label}: cannot reach the ESP ({type(cause).__name__})")
            return VendorError(f"{self.label}: no answer from the ESP ({type(cause).__name__})", outcome_unknown=True)
        status = exc.status_code
        body = _json_of(exc)
        code = body.get("ErrorCode")
        code = code if isinstance(code, int) and code != 0 else None  # 0 is Postmark's "no error"
        text = scrub(str(body.get("Message") or ""), message.to)[:200]
        detail = f"HTTP {status}" + (f", ErrorCode {code}" if code is not None else "") + (f": {text}" if text else "")
        vendor_code = str(code) if code is not None else None
        label = f"{self.label} ({self.settings.get('esp')})"
        if code in POSTMARK_PERMANENT_CODES:
            return VendorError(f"{label}: {POSTMARK_PERMANENT_CODES[code]} ({detail})", permanent=True,
                               status_code=status, vendor_code=vendor_code)
        if code in POSTMARK_MISCONFIGURED_CODES or status in MISCONFIGURED_STATUSES:
            why = POSTMARK_MISCONFIGURED_CODES.get(code or 0, "credentials refused")
            return VendorError(f"{label}: {why} ({detail})", misconfigured=True, status_code=status,
                               vendor_code=vendor_code)
        if status is None or status >= 500 or status in TRANSIENT_STATUSES or not isinstance(exc, AnymailAPIError):
            return VendorError(f"{label}: {detail}", status_code=status, vendor_code=vendor_code)
        # Any other 4xx: the ESP refused this message.
        return VendorError(f"{label}: refused ({detail})", permanent=True, status_code=status, vendor_code=vendor_code)


def _json_of(exc: AnymailError) -> dict[str, Any]:
    try:
        body = exc.response.json() if exc.response is not None else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
