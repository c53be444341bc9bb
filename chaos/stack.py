"""The chaos stack (harness/stack.py): a fresh database, a private Redis, gunicorn, two workers,
beat, the sandbox.

Everything listens on loopback on free ports. PostgreSQL is the machine's (DATABASE_URL's
server), with its own database `beacon_chaos`; the web reaches it through `PostgresProxy`
(harness/dbproxy.py) so the suite can make it unreachable for the web alone. Redis is a private
server the suite stops and starts (broker, cache and breakers all live in it).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from harness.database import database_url
from harness.stack import Stack, StackOptions

# CHAOS_DATABASE in the environment names another (two runs on one server must not share one).
CHAOS_DATABASE = os.environ.get("CHAOS_DATABASE", "beacon_chaos")

# Tunables of the chaos stack: short enough that each fault plays out in seconds.
STACK_SETTINGS = {
    "OUTBOX_RELAY_GRACE": "2",  # the relay takes over a hand-off 2 s after COMMIT
    "OUTBOX_RELAY_INTERVAL": "1",
    "NOTIFICATION_SWEEP_INTERVAL": "2",
    "NOTIFICATION_SWEEP_STALE_SECONDS": "6",  # lost queue messages are found within ~8 s
    "NOTIFICATION_MAX_ATTEMPTS": "3",  # the retry budget scenario 4 outlasts
    "NOTIFICATION_RETRY_BASE_DELAY": "1",
    "NOTIFICATION_RETRY_MAX_DELAY": "4",
    "NOTIFICATION_LEASE_MARGIN": "2",
    "BEACON_PUBLISH_COOLDOWN": "2",
    "SESSION_COOKIE_SECURE": "false",  # the admin is reached over loopback http
    "CSRF_COOKIE_SECURE": "false",
    "LOG_LEVEL": "INFO",
    "DEBUG": "false",
}
# Vendors: short timeouts and small, fast breakers (Resilience4j semantics, see circuit_breaker.py).
VENDOR_TIMEOUT_SECONDS = 2.0
BREAKER = {
    "breaker_window_size": 10,
    "breaker_minimum_calls": 4,
    "breaker_failure_rate": 50.0,
    "breaker_slow_call_seconds": 1.8,
    "breaker_slow_call_rate": 100.0,
    "breaker_open_seconds": 2.0,
    "breaker_half_open_trials": 2,
}


# The chaos stack's workers; each exports its metrics on a port of its own (scenario 4 scrapes them).
WORKERS = ("worker-a", "worker-b")


def chaos_stack(*, server_database_url: str, log_dir: Path) -> Stack:
    """The chaos stack on DATABASE_URL's server; the web reaches PostgreSQL through the proxy."""
    return Stack(StackOptions(
        log_dir=log_dir,
        database_url=database_url(server_database_url, CHAOS_DATABASE),
        broker_db=2,
        settings={"SECRET_KEY": "chaos-" + secrets.token_urlsafe(48), "CACHE_KEY_PREFIX": "beacon-chaos",
                  "WORKER_METRICS_PORT": "0", "STATIC_ROOT": str(log_dir.parent / "static"), **STACK_SETTINGS},
        # Few threads: every thread holds a PostgreSQL connection, and the server is shared.
        web_workers=2,
        web_threads=4,
        database_proxy=True,
        worker_concurrency=4,
        worker_metrics=True,
        collectstatic=True,
    ))
