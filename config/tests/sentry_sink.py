"""A local stand-in for sentry.io, for every app's tests (a pytest plugin named by the root
conftest.py's `pytest_plugins`): an HTTP server that keeps the envelopes the Sentry SDK sends it.

Not a test module: tests import its helpers and ask for the `sentry_sink` fixture by name.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import brotli
import pytest


class EnvelopeSink(ThreadingHTTPServer):
    """Stands in for sentry.io: stores every envelope POSTed to /api/<project>/envelope/."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EnvelopeHandler)
        self.envelopes: list[bytes] = []
        self.lock = threading.Lock()

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.server_address[1]}/1"

    def events(self) -> list[dict[str, Any]]:
        """The error events received so far (envelope items of type "event")."""
        found = []
        with self.lock:
            envelopes = list(self.envelopes)
        for envelope in envelopes:
            lines = envelope.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    found.append(json.loads(payload))
        return found


class _EnvelopeHandler(BaseHTTPRequestHandler):
    server: EnvelopeSink

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "br":
            body = brotli.decompress(body)
        elif encoding == "gzip":
            body = gzip.decompress(body)
        if self.path == "/api/1/envelope/":
            with self.server.lock:
                self.server.envelopes.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sentry_sink() -> Iterator[EnvelopeSink]:
    """A running EnvelopeSink on a free loopback port; point SENTRY_DSN at its `dsn`."""
    sink = EnvelopeSink()
    thread = threading.Thread(target=sink.serve_forever, daemon=True)
    thread.start()
    yield sink
    sink.shutdown()
    sink.server_close()


def strings_in(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value, dictionary keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
