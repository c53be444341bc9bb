"""API client keys: created once, stored as a SHA-256 hash, checked in constant time.

Keys are 256-bit random secrets, so a fast hash is the right tool (as with GitHub's and
Stripe's tokens): a slow password hash would only slow every request.

Each process keeps the clients it looked up for KEY_CACHE_SECONDS (one second): the lookup was
a SELECT on every API request, 8% of the web's CPU per checkout (docs/performance.md). The key
is still hashed and compared on every request; what is cached is the client row. A revoked or
rotated key therefore stops working within a second in every process, and at once in the
process that revoked it (any save of a client empties that process's cache).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from checkout.models import ApiClient
from checkout.statements import api_client_by_prefix

KEY_PREFIX_MARK = "bk"
# Compared against when the prefix matches no client, so both paths cost the same.
_DUMMY_HASH = hashlib.sha256(b"no-such-client").hexdigest()

# How long a process trusts a client row it read: the bound on a revocation reaching it.
KEY_CACHE_SECONDS = 1.0
# Clients a process holds at most (a cache this full is emptied: a few SELECTs, no growth).
KEY_CACHE_MAX_CLIENTS = 10_000
# The clock, a name of its own so tests can move past KEY_CACHE_SECONDS.
_clock = time.monotonic
# prefix -> (client, read at); only active clients are held. Reads and writes of one key are
# atomic under the GIL, and a lost race only costs a second SELECT.
_clients_by_prefix: dict[str, tuple[ApiClient, float]] = {}


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
        client = _active_client(prefix)
    expected = client.key_hash if client else _DUMMY_HASH
    if hmac.compare_digest(_key_hash(key), expected) and client is not None:
        return client
    return None


def _active_client(prefix: str) -> ApiClient | None:
    """The active client with `prefix`, as read at most KEY_CACHE_SECONDS ago in this process."""
    now = _clock()
    held = _clients_by_prefix.get(prefix)
    if held is not None and now - held[1] < KEY_CACHE_SECONDS:
        return held[0]
    client = api_client_by_prefix(prefix)
    if client is None:
        _clients_by_prefix.pop(prefix, None)
        return None
    if len(_clients_by_prefix) >= KEY_CACHE_MAX_CLIENTS:
        _clients_by_prefix.clear()
    _clients_by_prefix[prefix] = (client, now)
    return client


def api_client_cache_clear() -> None:
    """Forget every client this process read (on any save of a client: a rotation or a
    revocation takes effect here at once, elsewhere within KEY_CACHE_SECONDS)."""
    _clients_by_prefix.clear()


def api_client_saved_or_deleted(**_: object) -> None:
    """post_save/post_delete of ApiClient (connected in CheckoutConfig.ready)."""
    api_client_cache_clear()
