"""Sentry set-up: only when SENTRY_DSN is set, with no personal data sent."""

from __future__ import annotations

from typing import Any

from config.logging import mask_text

# Keys whose values are secrets wherever they appear in an event (extra, contexts, headers, frame
# variables): vendor auth tokens, passwords, API keys. Matched case-insensitively as substrings.
_SECRET_KEY_PARTS = ("auth_token", "authorization", "password", "secret", "api_key", "apikey", "token", "credential")
REDACTED = "[redacted]"


def _secret_key(key: Any) -> bool:
    return isinstance(key, str) and any(part in key.lower() for part in _SECRET_KEY_PARTS)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {key: REDACTED if _secret_key(key) and item else _scrub(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(item) for item in value]
    return value


def sentry_before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Mask emails, phone numbers and secret assignments anywhere in the event, and drop the
    value of every secret-named key (`auth_token`, `Authorization`, ...)."""
    return _scrub(event)


def sentry_init(*, dsn: str, environment: str, release: str | None, traces_sample_rate: float) -> None:
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
        before_send=sentry_before_send,
        # Spans carry SQL, Redis commands and URLs: scrub transactions the same way.
        before_send_transaction=sentry_before_send,
        integrations=[DjangoIntegration(), CeleryIntegration(), RedisIntegration()],
    )
