"""The web's hand-off never hangs on a broken broker (celery#4296)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from notifications import publisher


@pytest.fixture
def broker_at(settings) -> Iterator:
    def point(url: str) -> None:
        settings.CELERY_BROKER_URL = url
        publisher._publisher_app.cache_clear()
        publisher.publisher_reset()

    yield point
    publisher._publisher_app.cache_clear()
    publisher.publisher_reset()


def test_publishing_to_a_refusing_broker_returns_false_and_then_stops_trying(broker_at) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connections are refused
    broker_at(f"redis://127.0.0.1:{port}/0")

    assert publisher.task_publish_bounded("notifications.tasks.trigger_dispatch", args=[1]) is False
    # During the cool-down it does not even try (no connection attempt, no delay).
    assert publisher._suppressed_until > 0
    assert publisher.task_publish_bounded("notifications.tasks.trigger_dispatch", args=[1]) is False


def test_publishing_to_a_broker_that_never_answers_gives_up_instead_of_hanging(broker_at) -> None:
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)  # accepts connections, never says a word
        broker_at(f"redis://127.0.0.1:{black_hole.getsockname()[1]}/0")

        assert publisher.task_publish_bounded("notifications.tasks.trigger_dispatch", args=[1]) is False


def test_publishing_to_a_live_broker_succeeds(broker_at, settings) -> None:
    broker_at(settings.CELERY_BROKER_URL)

    assert publisher.task_publish_bounded("notifications.tasks.trigger_dispatch", args=[0]) is True
