"""Sentry set-up: only when SENTRY_DSN is set, with no personal data sent.

Error reports are about Beacon's code, not its customers: no local variables (a rendered
message with the customer's name sits in a send's frame), no request bodies, message-content
keys dropped wherever they appear, emails and phone numbers masked. Trace headers
(`sentry-trace`, `baggage`: release, transaction name) go only to the hosts listed in
SENTRY_TRACE_PROPAGATION_TARGETS; by default nowhere, so no vendor receives them.
"""

from __future__ import annotations

from typing import Any

from foundation.masking import text_mask

# Keys whose values are secrets wherever they appear in an event (extra, contexts, headers, frame
# variables): vendor auth tokens, passwords, API keys. Matched case-insensitively as substrings.
_SECRET_KEY_PARTS = ("auth_token", "authorization", "password", "secret", "api_key", "apikey", "token", "credential")
REDACTED = "[redacted]"
# Keys whose values are message content (a rendered notification, a trigger's payload): dropped
# from events whole, since a customer's name is neither an email nor a phone number to mask.
_CONTENT_KEYS = frozenset({
    "rendered_subject", "rendered_text", "rendered_html", "subject", "text", "html", "body", "body_text", "body_html",
    "payload", "customer", "customer_name", "context",
})
CONTENT_REMOVED = "[message content removed]"


def _secret_key(key: Any) -> bool:
    return isinstance(key, str) and any(part in key.lower() for part in _SECRET_KEY_PARTS)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return text_mask(value)
    if isinstance(value, dict):
        return {key: _scrub_item(key, item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(item) for item in value]
    return value


def _scrub_item(key: Any, item: Any) -> Any:
    if _secret_key(key) and item:
        return REDACTED
    if isinstance(key, str) and key.lower() in _CONTENT_KEYS and item:
        return CONTENT_REMOVED
    return _scrub(item)


def sentry_before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Mask emails, phone numbers and secret assignments anywhere in the event, and drop the
    value of every secret-named key (`auth_token`, `Authorization`, ...) and of every
    message-content key (`rendered_text`, `payload`, ...)."""
    return _scrub(event)


def sentry_init(
    *,
    dsn: str,
    environment: str,
    release: str | None,
    traces_sample_rate: float,
    trace_propagation_targets: list[str] | None = None,
) -> None:
    """Initialise sentry-sdk for this process (web, worker, beat): Django, Celery and Redis
    integrations; no default PII (no user, cookies, request bodies' personal fields); every
    event and transaction passes through `sentry_before_send`."""
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.redis import RedisIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        # A frame's locals hold rendered messages and payloads; a request body holds a customer.
        include_local_variables=False,
        max_request_body_size="never",
        # Outgoing HTTP calls (vendors!) carry sentry-trace/baggage only to these URLs.
        trace_propagation_targets=list(trace_propagation_targets or []),
        before_send=sentry_before_send,
        # Spans carry SQL, Redis commands and URLs: scrub transactions the same way.
        before_send_transaction=sentry_before_send,
        integrations=[DjangoIntegration(), CeleryIntegration(), RedisIntegration()],
    )
