"""API client keys: created once, stored as a SHA-256 hash, checked in constant time.

Keys are 256-bit random secrets, so a fast hash is the right tool (as with GitHub's and
Stripe's tokens): a slow password hash would only slow every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from checkout.models import ApiClient
from checkout.statements import api_client_by_prefix

KEY_PREFIX_MARK = "bk"
# Compared against when the prefix matches no client, so both paths cost the same.
_DUMMY_HASH = hashlib.sha256(b"no-such-client").hexdigest()


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _key_new() -> tuple[str, str]:
    """A fresh (prefix, key) pair."""
    prefix = secrets.token_hex(4)
    return prefix, f"{KEY_PREFIX_MARK}_{prefix}_{secrets.token_urlsafe(32)}"


def api_client_create(*, name: str, rate_limit_per_minute: int = 0) -> tuple[ApiClient, str]:
    """Create a client; return it with its key, which is never retrievable again."""
    prefix, key = _key_new()
    client = ApiClient.objects.create(
        name=name, key_prefix=prefix, key_hash=_key_hash(key), rate_limit_per_minute=rate_limit_per_minute
    )
    return client, key


def api_client_key_rotate(*, client: ApiClient) -> str:
    """Give `client` a new key and revoke its old one; return the new key (shown once).

    The client row stays, and with it its orders and idempotency records: only the key
    changes. The old key stops working as soon as this commits. Running it twice just
    rotates twice.
    """
    prefix, key = _key_new()
    client.key_prefix, client.key_hash, client.is_active = prefix, _key_hash(key), True
    client.save(update_fields=["key_prefix", "key_hash", "is_active"])
    return key


def api_client_authenticate(*, key: str) -> ApiClient | None:
    """The active client owning `key`, or None. Safe against timing attacks on the hash."""
    mark, _, rest = key.partition("_")
    prefix, _, secret = rest.partition("_")
    client = None
    if mark == KEY_PREFIX_MARK and secret and len(prefix) == 8:
        client = api_client_by_prefix(prefix)
    expected = client.key_hash if client else _DUMMY_HASH
    if hmac.compare_digest(_key_hash(key), expected) and client is not None:
        return client
    return None
