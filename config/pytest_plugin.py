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
