"""What Beacon asks of its broker besides Celery's own traffic, on Redis or on RabbitMQ.

`CELERY_BROKER_URL` picks the broker: `redis://` (the default, one machine) or `amqp://` (RabbitMQ,
several nodes as a `;`-separated failover list). Readiness and the queue-depth gauges must work
on both; these helpers are the only place that knows the difference.
"""

from __future__ import annotations

from kombu import Connection

AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


def broker_is_amqp(url: str) -> bool:
    return url.startswith(AMQP_SCHEMES)


def _amqp_connection(url: str, timeout: float) -> Connection:
    # read/write timeouts bound every frame; one pass over the failover list, no retry loop.
    return Connection(url, connect_timeout=timeout, transport_options={"read_timeout": timeout, "write_timeout": timeout})


def amqp_ping(url: str, *, timeout: float) -> None:
    """Open and close a connection to some node of the list. Raises what kombu raises when none answers."""
    with _amqp_connection(url, timeout) as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout * 3)


def amqp_queue_depths(url: str, queues: list[str], *, timeout: float) -> dict[str, int | None]:
    """Ready messages per queue (a passive declare per queue; None for a queue that does not exist yet).

    Raises what kombu raises when no node answers.
    """
    depths: dict[str, int | None] = {}
    with _amqp_connection(url, timeout) as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout * 3)
        for queue in queues:
            channel = connection.channel()
            try:
                depths[queue] = channel.queue_declare(queue, passive=True).message_count
            except connection.channel_errors:  # NOT_FOUND closes the channel, not the connection
                depths[queue] = None
            finally:
                channel.close() if channel.is_open else None
    return depths
