"""A guard around one kombu Redis-transport bug that takes a Celery worker down with Redis.

When the broker connection drops while tasks are in flight (late acks), Celery closes the
channel and kombu tries to push the unacked messages back to Redis (`QoS.restore_unacked_once`).
If the channel's connection is already gone this raises AttributeError ("'NoneType' object has
no attribute 'hostname'", cf. celery/kombu#582), which Celery does not treat as a connection
error: "Unrecoverable error", the worker exits and never reconnects. Found by `make chaos`
(scenario 1, Redis stopped under load).

Skipping that restore is safe for Beacon: the messages stay in Redis's unacked hash (restored
after the visibility timeout), and the database says what is due, so the sweeper re-queues
every notification whose message was lost.
"""

from __future__ import annotations

import logging
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


def kombu_redis_guard_install() -> None:
    """Idempotent: wrap kombu's Redis QoS.restore_unacked_once once per process."""
    if kombu_redis.QoS.restore_unacked_once is not _restore_unacked_once_guarded:
        kombu_redis.QoS.restore_unacked_once = _restore_unacked_once_guarded
