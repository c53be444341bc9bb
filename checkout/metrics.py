"""Prometheus metrics of the checkout API, and the decorator that records them."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.db import InterfaceError, OperationalError
from prometheus_client import Counter, Histogram

CHECKOUTS = Counter(
    "beacon_checkouts_total",
    "Checkout requests that reached the checkout view, by outcome "
    "(paid, payment_failed, replayed, invalid, conflict, gateway_error, unavailable, error).",
    ["outcome"],
)
# Buckets around the checkout's budget: most answers take tens of ms, the SLO is on p99.
CHECKOUT_SECONDS = Histogram(
    "beacon_checkout_duration_seconds",
    "Time to answer a checkout request in the view (validation, payment, database), by outcome.",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Outcomes that count against the checkout error-rate SLO (the server's fault, or its payment provider's).
ERROR_OUTCOMES = ("gateway_error", "unavailable", "error")


def checkout_outcome(status_code: int, *, replayed: bool = False) -> str:
    """The `outcome` label of a checkout answered with `status_code` (a bounded set of values)."""
    if replayed:
        return "replayed"
    if status_code == 201:
        return "paid"
    if status_code == 402:
        return "payment_failed"
    if status_code == 409:
        return "conflict"
    if status_code == 502:
        return "gateway_error"
    if status_code == 503:
        return "unavailable"
    if 400 <= status_code < 500:
        return "invalid"
    return "error"


def _status_of(exc: Exception) -> int:
    """The status the API's exception handler answers for `exc` (500 when it has none)."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return 503
    status_code = getattr(exc, "status_code", None)  # DRF's APIException and our ApplicationError
    return status_code if isinstance(status_code, int) else 500


def checkout_observed(view_method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate the checkout view's `post`: count the outcome and time the answer.

    Exceptions raised by the view (validation, ApplicationError) are classified by the status
    the API's exception handler will give them, then re-raised untouched.
    """

    @wraps(view_method)
    def observed(view: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        outcome = "error"
        try:
            response = view_method(view, request, *args, **kwargs)
            outcome = checkout_outcome(response.status_code, replayed=response.has_header("Idempotent-Replayed"))
            return response
        except Exception as exc:
            outcome = checkout_outcome(_status_of(exc))
            raise
        finally:
            CHECKOUTS.labels(outcome=outcome).inc()
            CHECKOUT_SECONDS.labels(outcome=outcome).observe(time.perf_counter() - started)

    return observed
