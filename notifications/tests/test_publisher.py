"""The web's hand-off never hangs on a broken broker (celery#4296)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

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


class _SlowProxy:
    """A TCP proxy to `upstream` that holds every reply back `delay` seconds: a broker on a busy box."""

    def __init__(self, upstream: tuple[str, int], delay: float) -> None:
        self.upstream, self.delay = upstream, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self.delay), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket, delay: float) -> None:
        try:
            while data := source.recv(65536):
                time.sleep(delay)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                end.close()

    def close(self) -> None:
        self.listener.close()


def test_the_listener_waits_longer_for_a_slow_broker_than_the_web_does(broker_at, settings) -> None:
    """A broker that answers in 150 ms: the web gives up (BEACON_PUBLISH_TIMEOUT, 50 ms: a customer
    waits), the workers' listener publishes (TRIGGER_LISTENER_PUBLISH_TIMEOUT, 1 s: nobody does)."""
    live = urlsplit(settings.CELERY_BROKER_URL)
    proxy = _SlowProxy((live.hostname, live.port or 6379), delay=0.15)
    try:
        broker_at(f"redis://127.0.0.1:{proxy.port}{live.path or '/0'}")
        assert publisher.task_publish_bounded("notifications.tasks.trigger_dispatch", args=[0]) is False

        publisher.publisher_reset()
        calls = [([0], {"request_id": "-"})]
        assert publisher.tasks_publish_bounded("notifications.tasks.trigger_dispatch", calls=calls) == 1
    finally:
        proxy.close()
