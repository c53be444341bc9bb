"""Fixtures of the security tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.security.listeners import Listener


@pytest.fixture
def listener() -> Iterator[Listener]:
    """An attacker's HTTP server on a free loopback port, serving in a thread until the test ends."""
    server = Listener()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
