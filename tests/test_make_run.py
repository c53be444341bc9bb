"""`make run` as a newcomer runs it: twice, with an order placed in between.

The Makefile, the Procfile, seed_demo, honcho, gunicorn, the worker, beat and the sandbox all
run for real, in a copy of this checkout (so its `.env`, static files and `.devservices/` are
its own) against a database and a Redis server of its own, on a base port chosen here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from harness.processes import RedisServer, port_free, wait_until
from sandbox.client import SandboxControl

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# The ports `make run PORT=P` opens, as offsets from P (Makefile, RUN_PORTS).
PORT_OFFSETS = {"web": 0, "worker metrics": 10, "sandbox control": 100}
ALL_OFFSETS = (0, 10, 100, 101, 102, 125, 126)
# A first `make run` migrates an empty database and collects the static files.
START_TIMEOUT = 240
DELIVERY_TIMEOUT = 60
CHECKOUT = {
    "customer": {"name": "Ana Souza", "email": "ana@example.com", "phone": "+5511987654321", "locale": "pt-BR"},
    "lines": [{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": "9.50"}],
    "currency": "BRL",
    "payment_token": "tok_ok",
}


def base_port() -> int:
    """A base port whose whole `make run` range is free, away from the defaults (8000)."""
    for base in range(18400, 40000, 200):
        if all(port_free(base + offset) for offset in ALL_OFFSETS):
            return base
    raise RuntimeError("no free port range for make run")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http(method: str, url: str, *, key: str = "", body: dict | None = None) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw, status, headers = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        raw, status, headers = error.read(), error.code, dict(error.headers)
    try:
        return status, json.loads(raw), headers
    except ValueError:
        return status, raw, headers


def checkout_copy(destination: Path) -> Path:
    """This checkout's files (tracked and new, not ignored ones), with the shared .venv linked in.

    Modification times are kept, so make finds the venv up to date and installs nothing.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (destination / ".venv").symlink_to((ROOT / ".venv").resolve())
    return destination


@dataclass
class MakeRun:
    """One `make run PORT=...` in its own process group, its output in a log file."""

    checkout: Path
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> MakeRun:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["make", "run", f"PORT={self.port}"], cwd=self.checkout, env=self.env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_until(lambda: self.ready() or self.process.poll() is not None, timeout=START_TIMEOUT, interval=0.5,
                   what=f"make run on port {self.port} ({self.log_path})")
        assert self.process.poll() is None, f"make run exited with {self.process.returncode}:\n{self.log()[-4000:]}"
        return self

    def ready(self) -> bool:
        if "API key of client" not in self.log():
            return False
        try:
            return http("GET", f"{self.url}/readyz")[0] == 200
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api_key(self) -> str:
        """The key printed by this run's seed_demo (the line after 'API key of client')."""
        lines = self.log().splitlines()
        index = max(i for i, line in enumerate(lines) if line.startswith("API key of client"))
        return lines[index + 1].strip()

    def stop(self) -> None:
        """Ctrl-C, as a user stops it: honcho stops every process it started."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def database_url_for(name: str) -> str:
    parts = urlsplit(os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/beacon"))
    return urlunsplit(parts._replace(path=f"/{name}"))


def admin_connect() -> psycopg.Connection:
    url = database_url_for("postgres").replace("postgres://", "postgresql://", 1)
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


@pytest.fixture
def own_database() -> Iterator[str]:
    name = f"beacon_makerun_{uuid.uuid4().hex[:8]}"
    with admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield database_url_for(name)
    with admin_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    server = RedisServer(log_dir=tmp_path).start()
    yield server.url(0)
    server.stop()


@pytest.fixture
def make_run_env(tmp_path: Path, own_database: str, own_redis: str) -> dict[str, str]:
    """What a user's shell has: no test-suite variables, a home of its own (no gunicorn.ctl there)."""
    home = tmp_path / "home"
    home.mkdir()
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(HOME=str(home), DATABASE_URL=own_database, REDIS_URL=own_redis, PYTHONUNBUFFERED="1")
    return env


def test_make_run_restarts_keeping_the_order_and_every_port_follows_the_base(
    tmp_path: Path, make_run_env: dict[str, str]
) -> None:
    checkout = checkout_copy(tmp_path / "checkout")
    port = base_port()
    first = MakeRun(checkout, port, make_run_env, tmp_path / "make-run-1.log")
    try:
        first.start()
        old_key = first.api_key()
        status, order, _ = http("POST", f"{first.url}/api/v1/checkouts/", key=old_key, body=CHECKOUT)
        assert status == 201, order
        # The worker and the sandbox of this run, on this run's ports, delivered it.
        sandbox = SandboxControl(f"http://127.0.0.1:{port + PORT_OFFSETS['sandbox control']}")
        [email] = sandbox.wait_for_messages("smtp-primary", 1, timeout=DELIVERY_TIMEOUT, to="ana@example.com")
        assert "Total: R$\xa019,00" in email["text"]  # money as a pt-BR customer reads it
        metrics_status, metrics, _ = http("GET", f"http://127.0.0.1:{port + PORT_OFFSETS['worker metrics']}/metrics")
        assert metrics_status == 200 and b"beacon_" in metrics
        # The admin's stylesheet comes from gunicorn itself (WhiteNoise), as CSS.
        css_status, css, css_headers = http("GET", f"{first.url}/static/admin/css/base.css")
        assert css_status == 200 and css_headers["Content-Type"].startswith("text/css") and b"--header-bg" in css
    finally:
        first.stop()

    second = MakeRun(checkout, port, make_run_env, tmp_path / "make-run-2.log")
    try:
        second.start()
        new_key = second.api_key()
        assert "previous key is revoked, its 1 order(s) are kept" in second.log()
        assert http("GET", f"{second.url}/api/v1/checkouts/{order['id']}/", key=old_key)[0] == 401
        status, kept, _ = http("GET", f"{second.url}/api/v1/checkouts/{order['id']}/", key=new_key)
        assert status == 200 and kept["total"] == "19.00"
        status, another, _ = http("POST", f"{second.url}/api/v1/checkouts/", key=new_key, body=CHECKOUT)
        assert status == 201, another
        sandbox.wait_for_messages("smtp-primary", 1, timeout=DELIVERY_TIMEOUT, to="ana@example.com")
    finally:
        second.stop()

    assert "ProtectedError" not in second.log()
    assert not (Path(make_run_env["HOME"]) / ".gunicorn").exists(), "gunicorn opened the per-user control socket"
    assert not any(listening(port + offset) for offset in ALL_OFFSETS), "Ctrl-C left a process listening"
