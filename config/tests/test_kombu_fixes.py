from __future__ import annotations

from unittest import mock

import pytest
from django.conf import settings
from kombu import Connection

import config.celery  # noqa: F401 - installs the guard, as every Beacon process does
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
