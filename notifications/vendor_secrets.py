"""Vendor secrets: stored Fernet-encrypted in the database, or read from the environment.

A stored value of the form `env:NAME` is read from the environment variable NAME when
used, so production can keep secrets out of the database altogether. Secrets are write-only:
nothing here returns them to a page, a log line or an error report.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

ENV_REFERENCE_PREFIX = "env:"


@cache
def _fernet() -> Fernet:
    key = settings.VENDOR_SECRETS_KEY
    if not key:
        # Derived from SECRET_KEY: rotating SECRET_KEY then needs the secrets re-entered.
        key = base64.urlsafe_b64encode(hashlib.sha256(f"vendor-secrets:{settings.SECRET_KEY}".encode()).digest()).decode()
    try:
        return Fernet(key)
    except ValueError as exc:
        raise ImproperlyConfigured("VENDOR_SECRETS_KEY must be 32 url-safe base64-encoded bytes.") from exc


def secrets_encrypt(values: dict[str, str]) -> str:
    """Encrypt a name -> value mapping for Vendor.secrets_encrypted ('' when empty)."""
    cleaned = {name: value for name, value in values.items() if value}
    if not cleaned:
        return ""
    return _fernet().encrypt(json.dumps(cleaned).encode()).decode()


def secrets_stored(encrypted: str) -> dict[str, str]:
    """The stored values (env references unresolved): for merging edits, never for display."""
    if not encrypted:
        return {}
    try:
        return json.loads(_fernet().decrypt(encrypted.encode()))
    except InvalidToken as exc:
        raise ImproperlyConfigured("Vendor secrets cannot be decrypted: VENDOR_SECRETS_KEY or SECRET_KEY changed.") from exc


def secrets_resolve(encrypted: str) -> dict[str, str]:
    """The values to use for a call, with `env:NAME` references read from the environment."""
    resolved = {}
    for name, value in secrets_stored(encrypted).items():
        if value.startswith(ENV_REFERENCE_PREFIX):
            value = os.environ.get(value[len(ENV_REFERENCE_PREFIX) :], "")
        resolved[name] = value
    return resolved


def secret_names(encrypted: str) -> list[str]:
    """Which secrets are set (names only), for showing 'set' / 'not set'."""
    return sorted(secrets_stored(encrypted))
