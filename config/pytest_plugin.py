"""Loaded by pytest with `-p config.pytest_plugin` before Django's settings are read.

It sets the environment the suite runs in. Real environment variables win (CI points
DATABASE_URL and REDIS_URL at the machine's services).
"""

from __future__ import annotations

import os

os.environ.setdefault("BEACON_TESTING", "1")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
os.environ.setdefault("LOG_FORMAT", "text")
os.environ.setdefault("CACHE_KEY_PREFIX", "beacon-test")
# `make run` writes a development `.env` (DEBUG=true); the suite runs as production would.
os.environ.setdefault("DEBUG", "false")
# The sandbox vendors and the tests' receivers listen on loopback over plain HTTP: allowed
# explicitly, as the egress policy's only exception here (tests/security checks the default).
os.environ.setdefault("VENDOR_EGRESS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
os.environ.setdefault("VENDOR_EGRESS_ALLOW_HTTP", "true")


def _broker_url_for_tests() -> str:
    """The tests' broker: its own Redis database (REDIS_URL's db + 2), so a test run's queue
    never mixes with a development stack's and can be purged freely."""
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    base, _, db = redis_url.rpartition("/")
    if base.startswith("redis") and db.isdigit():
        return f"{base}/{int(db) + 2}"
    return redis_url


os.environ.setdefault("CELERY_BROKER_URL", _broker_url_for_tests())
