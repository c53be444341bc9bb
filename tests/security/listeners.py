"""An attacker's HTTP server for the security tests: it records every request it gets.

Not a test module; its `listener` fixture is in tests/security/conftest.py."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Listener(ThreadingHTTPServer):
    """An attacker's HTTP server: records the headers of every request it gets."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ListenerHandler)
        self.seen: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ListenerHandler(BaseHTTPRequestHandler):
    server: Listener

    def do_POST(self) -> None:
        self.server.seen.append(dict(self.headers))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"sid": "SMlistener"}')

    def log_message(self, format: str, *args: Any) -> None:
        pass
