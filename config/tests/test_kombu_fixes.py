from __future__ import annotations

import uuid
from unittest import mock

import pytest
from django.conf import settings
from kombu import Connection

import config.celery  # noqa: F401 - installs the fixes, as every Beacon process does
from config import kombu_fixes


def _channel_that_lost_its_connection(connection: Connection):
    channel = connection.channel()
    channel.qos._delivered["tag-1"] = mock.Mock()  # a message in flight (late ack)
    channel.qos._delivered.restored = False
    channel._pool = None  # what a dropped connection leaves: the pool is rebuilt from...
    channel.connection.client = None  # ...a client that is gone
    return channel


def test_kombu_raises_attribute_error_restoring_unacked_through_a_lost_connection() -> None:
    channel = _channel_that_lost_its_connection(Connection(settings.CELERY_BROKER_URL))

    with pytest.raises(AttributeError):
        kombu_fixes._original_restore_unacked_once(channel.qos)


def test_the_guard_keeps_the_worker_alive_when_a_lost_channel_closes() -> None:
    """Celery would call the AttributeError an unrecoverable error and exit the worker."""
    channel = _channel_that_lost_its_connection(Connection(settings.CELERY_BROKER_URL))

    assert channel.qos.restore_unacked_once() is None


def test_a_channel_shares_one_client_until_its_pool_is_replaced() -> None:
    connection = Connection(settings.CELERY_BROKER_URL)
    channel = connection.channel()
    try:
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        channel._disconnect_pools()  # what a lost connection or a fork does

        with channel.conn_or_acquire() as after:
            assert after is not first
            assert after.connection_pool is channel.pool
            assert after.ping()
    finally:
        connection.release()


def test_messages_still_round_trip_through_the_shared_client() -> None:
    name = f"beacon-test-{uuid.uuid4().hex[:8]}"
    with Connection(settings.CELERY_BROKER_URL) as connection:
        queue = connection.SimpleQueue(name)
        try:
            for n in range(3):
                queue.put({"n": n})
            received = []
            for _ in range(3):
                message = queue.get(timeout=5)
                received.append(message.payload["n"])
                message.ack()
            assert received == [0, 1, 2]
            with pytest.raises(queue.Empty):
                queue.get_nowait()
        finally:
            queue.close()
            connection.default_channel.queue_delete(name)
