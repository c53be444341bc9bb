"""Which vendors a channel has, in fallback order, with their adapter, breaker and limiter.

Routing never names a vendor: everything comes from the Vendor rows and the adapter registry.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings

from notifications.circuit_breaker import BreakerConfig, VendorCircuit
from notifications.models import Vendor
from notifications.rate_limit import VendorRateLimiter
from notifications.vendor_secrets import secrets_resolve
from notifications.vendors.base import VendorAdapter
from notifications.vendors.registry import build_adapter


@dataclass(frozen=True)
class Route:
    vendor: Vendor
    adapter: VendorAdapter
    circuit: VendorCircuit
    limiter: VendorRateLimiter


# Adapters hold HTTP sessions worth reusing; rebuilt when the vendor row changes.
_routes: dict[tuple[int, float], Route] = {}
_routes_lock = threading.Lock()


def vendor_circuit(vendor: Vendor) -> VendorCircuit:
    return VendorCircuit(
        vendor.circuit_name,
        BreakerConfig(
            window_size=vendor.breaker_window_size,
            minimum_calls=vendor.breaker_minimum_calls,
            failure_rate_threshold=vendor.breaker_failure_rate,
            slow_call_duration=vendor.breaker_slow_call_seconds,
            slow_call_rate_threshold=vendor.breaker_slow_call_rate,
            open_seconds=vendor.breaker_open_seconds,
            half_open_trials=vendor.breaker_half_open_trials,
        ),
        label=vendor.name,
    )


def _route_build(vendor: Vendor) -> Route:
    adapter = build_adapter(
        vendor.adapter,
        settings=vendor.settings,
        secrets=secrets_resolve(vendor.secrets_encrypted),
        timeout=vendor.timeout_seconds,
    )
    limiter = VendorRateLimiter(
        f"vendor:{vendor.pk}", vendor.rate_limit_per_second, vendor.rate_limit_burst or None
    )
    return Route(vendor=vendor, adapter=adapter, circuit=vendor_circuit(vendor), limiter=limiter)


def route_for(vendor: Vendor) -> Route:
    """The route of one vendor, reusing this process's adapter while the row is unchanged."""
    key = (vendor.pk, vendor.updated_at.timestamp())
    route = _routes.get(key)
    if route is None:
        route = _route_build(vendor)
        with _routes_lock:
            for stale in [k for k in _routes if k[0] == vendor.pk]:
                del _routes[stale]
            _routes[key] = route
    return route


# channel -> (monotonic time loaded, the channel's enabled vendors in fallback order).
_vendors_by_channel: dict[str, tuple[float, list[Vendor]]] = {}
# Channels whose list a thread of this process is reading again right now.
_vendors_rereading: set[str] = set()
_vendors_lock = threading.Lock()


def channel_vendors(*, channel: str) -> list[Vendor]:
    """The channel's enabled vendors, in fallback order.

    Read once per NOTIFICATION_VENDOR_CACHE_SECONDS per process, not once per send: every
    send needs the list, and it changes only when an operator edits a vendor. A change made
    in this process applies at once (`vendors_forget`, on save); one made elsewhere within
    that many seconds. Circuit state lives in Redis and is never cached here.

    When the list runs out, one thread reads it again and the others keep the list they had
    meanwhile: every one of a worker's 16 threads read it at the same moment (4.7% of a
    worker's CPU, docs/performance.md). With no list yet, each thread reads its own.
    """
    now = time.monotonic()
    cached = _vendors_by_channel.get(channel)
    if cached is not None and now - cached[0] < settings.NOTIFICATION_VENDOR_CACHE_SECONDS:
        return cached[1]
    if cached is not None:
        with _vendors_lock:
            if channel in _vendors_rereading:
                return cached[1]
            _vendors_rereading.add(channel)
    try:
        vendors = _channel_vendors_read(channel)
        _vendors_by_channel[channel] = (now, vendors)
    finally:
        if cached is not None:
            with _vendors_lock:
                _vendors_rereading.discard(channel)
    return vendors


def _channel_vendors_read(channel: str) -> list[Vendor]:
    return list(Vendor.objects.filter(channel=channel, enabled=True).order_by("priority", "id"))


def vendors_forget() -> None:
    """Drop this process's cached vendor lists (a vendor row changed)."""
    _vendors_by_channel.clear()
