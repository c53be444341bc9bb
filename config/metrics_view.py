"""`/metrics` for Prometheus: served only to allowed networks or with the metrics token."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config.metrics_collectors import CeleryQueueDepthCollector
from config.metrics_export import metrics_registry
from foundation.trusted_proxies import address_in, client_address, forwarded_by_unnamed_proxy
from notifications.collectors import OutboxCollector


def metrics_request_allowed(request: HttpRequest) -> bool:
    """The metrics token, or a client address (foundation/trusted_proxies.py) in
    METRICS_ALLOWED_NETWORKS. A proxy in front must not make every client look local: behind a
    proxy named in TRUSTED_PROXIES the client is the one it forwards for (and one that forwards
    for nobody is refused); a peer that forwards but is not named is refused too."""
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(header.encode(), f"Bearer {token}".encode()):
        return True
    if forwarded_by_unnamed_proxy(request):
        return False
    address = client_address(request)
    return address is not None and address_in(address, settings.METRICS_ALLOWED_NETWORKS)


def metrics(request: HttpRequest) -> HttpResponse:
    """The web's metrics (every gunicorn worker's, merged; see config/metrics_export.py) plus the
    scrape-time gauges of the outbox, dead letters and Celery queues, which only the web exposes."""
    if not metrics_request_allowed(request):
        return HttpResponse("Forbidden: /metrics needs an allowed network or the metrics token.\n", status=403)
    registry = metrics_registry(OutboxCollector(), CeleryQueueDepthCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
