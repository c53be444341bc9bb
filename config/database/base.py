"""django-prometheus's PostgreSQL backend, whose health checks skip a connection proven a moment ago.

With CONN_HEALTH_CHECKS, Django runs `SELECT 1` on a persistent connection before the first
query of every request (and, through config/celery_signals.py, of every task): under load, one
more statement per checkout in the web and per task in a worker, on connections that answered
milliseconds earlier. Here a connection that ended its last request or task without a database
error less than DATABASE_HEALTH_CHECK_FRESH_SECONDS ago (setting, default 1; 0 checks every
time, as Django does) is not checked again. A connection idle for longer is checked as before,
so one broken while idle (PostgreSQL restarted, a failover) is still replaced without failing
the request; one that breaks within that second fails the request or task that finds it, is
closed after it, and the outbox relay or the sweeper finishes the work.
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django_prometheus.db.backends.postgresql.base import DatabaseWrapper as PrometheusDatabaseWrapper


class DatabaseWrapper(PrometheusDatabaseWrapper):
    # When the connection last ended a request or task in which it ran queries without an error.
    proven_at = -math.inf

    def close_if_unusable_or_obsolete(self) -> None:
        # Called at both ends of a request or task; health_check_done means queries ran since the start.
        if self.connection is not None and self.health_check_done and not self.errors_occurred:
            self.proven_at = time.monotonic()
        super().close_if_unusable_or_obsolete()

    def close_if_health_check_failed(self) -> None:
        fresh = getattr(settings, "DATABASE_HEALTH_CHECK_FRESH_SECONDS", 1.0)
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and time.monotonic() - self.proven_at < fresh
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def close(self) -> None:
        super().close()
        self.proven_at = -math.inf
