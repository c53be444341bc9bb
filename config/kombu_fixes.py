"""Two changes to kombu's Redis transport: a guard around a bug that takes a Celery worker down
with Redis, and one client object per channel instead of one per command.

1. The guard.

When the broker connection drops while tasks are in flight (late acks), Celery closes the
channel and kombu tries to push the unacked messages back to Redis (`QoS.restore_unacked_once`).
If the channel's connection is already gone this raises AttributeError ("'NoneType' object has
no attribute 'hostname'", cf. celery/kombu#582), which Celery does not treat as a connection
error: "Unrecoverable error", the worker exits and never reconnects. Found by `make chaos`
(scenario 1, Redis stopped under load).

Skipping that restore is safe for Beacon: the messages stay in Redis's unacked hash (restored
after the visibility timeout), and the database says what is due, so the sweeper re-queues
every notification whose message was lost.

2. One client per channel. Outside the consumer's poller, kombu builds a new `redis.Redis` for
every publish, acknowledgement and delivery bookkeeping (`Channel.conn_or_acquire`), and a
redis-py client builds its table of some 200 response callbacks in its constructor: about
50 us, as much as the round trip it is built for, and 4.5% of a worker's CPU in py-spy. A
client holds no connection of its own (each command takes one from the channel's pool and
gives it back), so one client per channel is shared by its threads, and a new one is made
when the channel's pool is replaced (after a disconnect or a fork).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis

logger = logging.getLogger(__name__)


def _restore_unacked_once_guarded(self: kombu_redis.QoS, stderr: Any = None) -> Any:
    try:
        return _original_restore_unacked_once(self, stderr)
    except AttributeError as exc:
        logger.warning("broker channel already gone; unacked messages left for the sweeper: %s", exc)
        return None


_original_restore_unacked_once = kombu_redis.QoS.restore_unacked_once


@contextmanager
def _conn_or_acquire_shared(self: kombu_redis.Channel, client: Any = None) -> Iterator[Any]:
    if client:
        yield client
        return
    pool = self.pool
    shared = self.__dict__.get("_beacon_shared_client")
    if shared is None or shared.connection_pool is not pool:
        shared = self._beacon_shared_client = self._create_client()
    yield shared


def kombu_redis_fixes_install() -> None:
    """Idempotent: wrap kombu's Redis QoS.restore_unacked_once and share a client per channel."""
    if kombu_redis.QoS.restore_unacked_once is not _restore_unacked_once_guarded:
        kombu_redis.QoS.restore_unacked_once = _restore_unacked_once_guarded
    if kombu_redis.Channel.conn_or_acquire is not _conn_or_acquire_shared:
        kombu_redis.Channel.conn_or_acquire = _conn_or_acquire_shared
