"""What a /metrics scrape returns, for the web and for the Celery worker's exporter.

Several processes (gunicorn workers, Celery's prefork children) each count in their own
memory, so a scrape answered by one of them would see only its own share. With
`PROMETHEUS_MULTIPROC_DIR` set (deploy/with-metrics-dir sets it for web and worker),
prometheus_client writes every process's values to files in that directory and the
exporter merges them: one scrape shows the sum over every process of the group.

Each process group (web, worker) needs its own directory, wiped at start, or one group's
counters would show up in the other's scrape too.
"""

from __future__ import annotations

import logging
import os
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# The worker's exporter: loopback only by default, scraped by a Prometheus on the same host
# (or set WORKER_METRICS_HOST to an address the scraper reaches). Port 0 disables it.
WORKER_METRICS_DEFAULT_PORT = 9808
WORKER_METRICS_DEFAULT_HOST = "127.0.0.1"


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def metrics_registry(*scrape_time_collectors: Collector) -> CollectorRegistry:
    """A registry of this process group's metrics plus `scrape_time_collectors`.

    Multiprocess mode: the merged files of every live and dead process of the group.
    Otherwise: this process's default registry.
    """
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_enabled():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)  # a registry is a collector of its metrics
    for collector in scrape_time_collectors:
        registry.register(collector)
    return registry


def worker_metrics_serve() -> WSGIServer | None:
    """Start the worker's /metrics exporter in a daemon thread; None when disabled or the port is taken.

    Call it in the worker's main process only (Celery's `worker_ready`): one exporter per
    worker instance, serving the merged values of all its pool processes.
    """
    port = int(os.environ.get("WORKER_METRICS_PORT", WORKER_METRICS_DEFAULT_PORT))
    host = os.environ.get("WORKER_METRICS_HOST", WORKER_METRICS_DEFAULT_HOST)
    if port == 0:
        return None
    if not multiprocess_enabled():
        logger.warning(
            "PROMETHEUS_MULTIPROC_DIR is not set: the worker exporter shows only its main process "
            "(run the worker through deploy/with-metrics-dir)"
        )
    try:
        server, _thread = start_http_server(port, addr=host, registry=metrics_registry())
    except OSError as exc:
        # A second worker instance on the same host: it needs its own WORKER_METRICS_PORT.
        logger.error("worker metrics exporter not started on %s:%s: %s", host, port, exc)
        return None
    logger.info("worker metrics exporter listening on http://%s:%s/metrics", host, port)
    return server


def process_mark_dead(pid: int) -> None:
    """Drop a finished process's live gauges (multiprocess mode); its counters are kept."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(pid)
