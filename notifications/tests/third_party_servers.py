"""Servers Beacon did not write, run as judges of its wire format: Prism (validating requests,
and the sandbox's answers, against Twilio's OpenAPI description) and nodemailer's smtp-server
(STARTTLS, AUTH). Both come from npm into tools/vendor-servers/node_modules (`.ci/run` installs
them); without them these tests skip, unless BEACON_REQUIRE_VENDOR_SERVERS is set (CI), when
they fail instead.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "vendor-servers"
PRISM = TOOLS / "node_modules" / ".bin" / "prism"
SMTP_SERVER_SCRIPT = TOOLS / "smtp_server.js"
# Twilio's OpenAPI description is project data kept in shared/ beside the checkout (CI lays a
# copy there too), not committed here; BEACON_VENDOR_SPECS names another folder.
TWILIO_SPEC = Path(os.environ.get("BEACON_VENDOR_SPECS", ROOT.parent / "shared" / "vendor-specs")) / "twilio_messages_v2010.json"
# Prism needs about 2 s to start here; a loaded CI machine may need several times that.
START_TIMEOUT_SECONDS = 60.0


def require_vendor_servers() -> None:
    """Skip (or, with BEACON_REQUIRE_VENDOR_SERVERS, fail) when node or the npm packages are missing."""
    missing = [
        what
        for what, present in (
            ("node", shutil.which("node") is not None),
            ("npm packages (npm ci --prefix tools/vendor-servers)", PRISM.exists()),
            (f"Twilio spec {TWILIO_SPEC}", TWILIO_SPEC.exists()),
        )
        if not present
    ]
    if not missing:
        return
    reason = "third-party vendor servers unavailable: missing " + ", ".join(missing)
    if os.environ.get("BEACON_REQUIRE_VENDOR_SERVERS"):
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class PrismProxy:
    """`prism proxy --errors` in front of `upstream`: an invalid request gets Prism's 422, a valid
    one goes upstream, and an upstream 2xx that breaks the description becomes an error."""

    def __init__(self, upstream: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [str(PRISM), "proxy", str(TWILIO_SPEC), upstream, "--host", "127.0.0.1", "--port", str(self.port),
             "--errors", "--verboseLevel", "warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"prism exited with status {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    _stop(self.process)
                    raise TimeoutError("prism did not start listening") from None
                time.sleep(0.1)

    def stop(self) -> None:
        _stop(self.process)

    def __enter__(self) -> PrismProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class NodeSmtpServer:
    """nodemailer's smtp-server driven by tools/vendor-servers/smtp_server.js; `messages()` returns
    what it accepted (envelope, MAIL FROM parameters, EHLO name, TLS, login, raw bytes)."""

    def __init__(self, **options: Any) -> None:
        self.process = subprocess.Popen(
            ["node", str(SMTP_SERVER_SCRIPT)],
            env={**os.environ, "BEACON_SMTP_SERVER": json.dumps(options)},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            first = self._lines.get(timeout=START_TIMEOUT_SECONDS)
        except queue.Empty:
            _stop(self.process)
            raise TimeoutError("smtp-server did not start listening") from None
        if not first.startswith("LISTENING "):
            _stop(self.process)
            raise RuntimeError(f"smtp-server said {first!r}")
        self.port = int(first.split()[1])
        self._messages: list[dict[str, Any]] = []

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.strip())

    def messages(self, *, wait_for: int = 0, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The messages accepted so far, waiting up to `timeout` until there are `wait_for`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                while True:
                    self._messages.append(json.loads(self._lines.get_nowait()))
            except queue.Empty:
                pass
            if len(self._messages) >= wait_for or time.monotonic() > deadline:
                return list(self._messages)
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # the script exits when its stdin closes
        _stop(self.process)

    def __enter__(self) -> NodeSmtpServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
