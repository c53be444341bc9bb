"""Checkout clients that behave as the API asks: one Idempotency-Key per order, retried on failure.

Open-loop like chaos/load.py (whose request, body and recipients it reuses), but a request that
gets no answer, a 5xx or a 409 (the first try still in flight) is sent again with the same key
and body, so a web host dying mid-request costs the customer a retry, never a second order.
"""

from __future__ import annotations

import threading
import time
import uuid

from chaos.load import LoadRun, Result, checkout_body, checkout_post, recipient_new

# A client gives up after this many tries or this long (seconds), whichever comes first. A key
# whose first request died with its web host answers 409 until IDEMPOTENCY_IN_FLIGHT_TIMEOUT (60 s)
# has passed, then the next try takes it over: a patient client outlasts that.
MAX_TRIES = 120
GIVE_UP_SECONDS = 90.0
# Pause between tries (seconds) when the answer names none: HAProxy needs about two health checks
# to route around a host. A Retry-After header is followed, up to MAX_PAUSE_SECONDS.
RETRY_PAUSE_SECONDS = 0.5
MAX_PAUSE_SECONDS = 5.0
RETRIED_STATUSES = {0, 409, 500, 502, 503, 504}


class RetryingLoadRun(LoadRun):
    """`rate` new orders a second for `seconds`; each client retries until it has an answer."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tries: dict[str, int] = {}
        self.keys: dict[str, str] = {}
        self._tries_lock = threading.Lock()

    def _one(self) -> None:
        try:
            recipient = recipient_new(self.tag)
            body, key = checkout_body(recipient), f"cluster-{uuid.uuid4()}"
            started = time.monotonic()
            tries, status, answer, headers = 0, 0, None, {}
            while tries < MAX_TRIES and time.monotonic() - started < GIVE_UP_SECONDS:
                tries += 1
                status, answer, headers = checkout_post(self.base_url, self.api_key, body, idempotency_key=key)
                if status not in RETRIED_STATUSES:
                    break
                time.sleep(_pause(headers))
            result = Result(recipient, status, time.monotonic() - started, started - self.started, answer, headers)
            with self._lock:
                self.results.append(result)
            with self._tries_lock:
                self.tries[recipient.email] = tries
                self.keys[recipient.email] = key
        finally:
            self._slots.release()

    def retried(self) -> int:
        """How many clients needed more than one try."""
        return sum(1 for tries in self.tries.values() if tries > 1)


def _pause(headers: dict[str, str]) -> float:
    """Seconds to wait before the next try: the answer's Retry-After (bounded), else the default."""
    named = next((value for name, value in headers.items() if name.lower() == "retry-after"), None)
    try:
        return min(MAX_PAUSE_SECONDS, max(RETRY_PAUSE_SECONDS, float(named))) if named else RETRY_PAUSE_SECONDS
    except ValueError:
        return RETRY_PAUSE_SECONDS
