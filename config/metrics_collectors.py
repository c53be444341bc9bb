"""Scrape-time gauges of the Celery broker: messages waiting per queue.

Read with LLEN on the broker Redis (a passive declare per queue on RabbitMQ) when /metrics is scraped (the web exposes them). Short
socket timeouts, and a broker that does not answer skips the samples, never the scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import cache

import redis
from django.conf import settings
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from foundation.broker import amqp_queue_depths, broker_is_amqp

logger = logging.getLogger(__name__)

# A scrape waits at most about this long (seconds) on an unreachable broker.
BROKER_SCRAPE_TIMEOUT = 0.5
# Kombu's Redis transport keeps one list per queue and priority step; priority 0 is the bare name.
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


def celery_queue_names() -> list[str]:
    """Every queue Beacon's workers consume: the default queue and the routed ones."""
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    return sorted({settings.CELERY_TASK_DEFAULT_QUEUE, *routed})


@cache
def _broker() -> redis.Redis:
    return redis.Redis.from_url(
        settings.CELERY_BROKER_URL,
        socket_timeout=BROKER_SCRAPE_TIMEOUT,
        socket_connect_timeout=BROKER_SCRAPE_TIMEOUT,
    )


class CeleryQueueDepthCollector(Collector):
    """`beacon_celery_queue_length{queue}`: messages waiting in each Celery queue."""

    def collect(self) -> Iterator[Metric]:
        queues = celery_queue_names()
        if broker_is_amqp(settings.CELERY_BROKER_URL):
            yield from self._collect_amqp(queues)
            return
        try:
            pipe = _broker().pipeline(transaction=False)
            for queue in queues:
                pipe.llen(queue)
                for step in _PRIORITY_STEPS:
                    pipe.llen(f"{queue}{_PRIORITY_SEPARATOR}{step}")
            lengths = pipe.execute()
        except redis.RedisError as exc:
            logger.warning("queue depth metrics skipped: %s", type(exc).__name__)
            return
        family = GaugeMetricFamily(
            "beacon_celery_queue_length", "Messages waiting in a Celery queue (not yet taken by a worker).", labels=["queue"]
        )
        per_queue = len(_PRIORITY_STEPS) + 1
        for index, queue in enumerate(queues):
            family.add_metric([queue], sum(lengths[index * per_queue : (index + 1) * per_queue]))
        yield family

    @staticmethod
    def _collect_amqp(queues: list[str]) -> Iterator[Metric]:
        """RabbitMQ: ready messages per queue (passive declares); a queue not declared yet is left out."""
        try:
            depths = amqp_queue_depths(settings.CELERY_BROKER_URL, queues, timeout=BROKER_SCRAPE_TIMEOUT)
        except Exception as exc:  # any connection error of any node: skip the samples, never the scrape
            logger.warning("queue depth metrics skipped: %s", type(exc).__name__)
            return
        family = GaugeMetricFamily(
            "beacon_celery_queue_length", "Messages waiting in a Celery queue (not yet taken by a worker).", labels=["queue"]
        )
        for queue, depth in depths.items():
            if depth is not None:
                family.add_metric([queue], depth)
        yield family
