"""Admin login protection (django-axes) made visible: every failed login and every lockout is
counted for Prometheus, and a lockout is logged with the address and username it locks.

django-axes does the locking itself (settings: AXES_*): after ADMIN_LOGIN_FAILURE_LIMIT failures
for one username, or from one client address, that username or address is refused, even with
the right password, for ADMIN_LOGIN_LOCKOUT_MINUTES.
"""

from __future__ import annotations

import logging
from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from prometheus_client import Counter

logger = logging.getLogger(__name__)

ADMIN_LOGIN_FAILURES = Counter("beacon_admin_login_failures_total", "Failed admin logins (locked-out attempts included).")
ADMIN_LOCKOUTS = Counter("beacon_admin_lockouts_total", "Admin logins refused because a username or address is locked out.")


@receiver(user_login_failed, dispatch_uid="beacon-admin-login-failed")
def _login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    ADMIN_LOGIN_FAILURES.inc()


@receiver(user_locked_out, dispatch_uid="beacon-admin-locked-out")
def _locked_out(sender: Any, request: Any, username: str | None = None, ip_address: str | None = None, **kwargs: Any) -> None:
    ADMIN_LOCKOUTS.inc()
    logger.warning("admin login locked out: username %r from %s", username or "", ip_address or "unknown")
