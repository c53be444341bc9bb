"""`/metrics` for Prometheus: served only to allowed networks or with the metrics token."""

from __future__ import annotations

import hmac
import ipaddress
from functools import cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config.metrics_collectors import CeleryQueueDepthCollector
from config.metrics_export import metrics_registry
from notifications.collectors import OutboxCollector


@cache
def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_NETWORKS]


def metrics_request_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(header.encode(), f"Bearer {token}".encode()):
        return True
    # A proxy in front must not make every client look local: forwarded requests need the token.
    if "X-Forwarded-For" in request.headers:
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in _allowed_networks())


def metrics(request: HttpRequest) -> HttpResponse:
    """The web's metrics (every gunicorn worker's, merged; see config/metrics_export.py) plus the
    scrape-time gauges of the outbox, dead letters and Celery queues, which only the web exposes."""
    if not metrics_request_allowed(request):
        return HttpResponse("Forbidden: /metrics needs an allowed network or the metrics token.\n", status=403)
    registry = metrics_registry(OutboxCollector(), CeleryQueueDepthCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
