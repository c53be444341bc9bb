"""The chaos stack: a fresh database, a private Redis, gunicorn, two workers, beat, the sandbox.

Everything listens on loopback on free ports. PostgreSQL is the machine's (DATABASE_URL's
server), with its own database `beacon_chaos`; the web reaches it through `PostgresProxy` so
the suite can make it unreachable for the web alone. Redis is a private server the suite
stops and starts (broker, cache and breakers all live in it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from chaos.dbproxy import PostgresProxy
from harness.processes import (
    PYTHON,
    ROOT,
    ManagedProcess,
    RedisServer,
    celery_beat,
    celery_worker,
    free_port,
    gunicorn,
    sandbox_base_port,
    sandbox_vendors,
    stack_env,
    wait_until,
)
from sandbox.client import SandboxControl

CHAOS_DATABASE = "beacon_chaos"

# Tunables of the chaos stack: short enough that each fault plays out in seconds.
STACK_SETTINGS = {
    "OUTBOX_RELAY_GRACE": "2",  # the relay takes over a hand-off 2 s after COMMIT
    "OUTBOX_RELAY_INTERVAL": "1",
    "NOTIFICATION_SWEEP_INTERVAL": "2",
    "NOTIFICATION_SWEEP_STALE_SECONDS": "6",  # lost queue messages are found within ~8 s
    "NOTIFICATION_MAX_ATTEMPTS": "3",  # the retry budget scenario 4 outlasts
    "NOTIFICATION_RETRY_BASE_DELAY": "1",
    "NOTIFICATION_RETRY_MAX_DELAY": "4",
    "NOTIFICATION_LEASE_MARGIN": "2",
    "BEACON_PUBLISH_COOLDOWN": "2",
    "SESSION_COOKIE_SECURE": "false",  # the admin is reached over loopback http
    "CSRF_COOKIE_SECURE": "false",
    "LOG_LEVEL": "INFO",
    "DEBUG": "false",
}
# Vendors: short timeouts and small, fast breakers (Resilience4j semantics, see circuit_breaker.py).
VENDOR_TIMEOUT_SECONDS = 2.0
BREAKER = {
    "breaker_window_size": 10,
    "breaker_minimum_calls": 4,
    "breaker_failure_rate": 50.0,
    "breaker_slow_call_seconds": 1.8,
    "breaker_slow_call_rate": 100.0,
    "breaker_open_seconds": 2.0,
    "breaker_half_open_trials": 2,
}


def _with_database(url: str, name: str, *, port: int | None = None, host: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if port is not None:
        userinfo, _, _hostport = netloc.rpartition("@")
        netloc = f"{userinfo + '@' if userinfo else ''}{host or parts.hostname}:{port}"
    return urlunsplit((parts.scheme, netloc, f"/{name}", parts.query, parts.fragment))


class ChaosStack:
    def __init__(self, *, server_database_url: str, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.server_url = server_database_url
        self.database_url = _with_database(server_database_url, CHAOS_DATABASE)
        parts = urlsplit(server_database_url)
        self.pg_host, self.pg_port = parts.hostname or "127.0.0.1", parts.port or 5432
        self.redis = RedisServer(log_dir=log_dir)
        self.proxy = PostgresProxy(target_host=self.pg_host, target_port=self.pg_port, listen_port=free_port())
        self.web_port = free_port()
        self.sandbox_port = sandbox_base_port()
        self.secret_key = "chaos-" + secrets.token_urlsafe(48)
        self.processes: dict[str, ManagedProcess] = {}
        self.worker_metrics_ports: dict[str, int] = {}
        self.sandbox = SandboxControl(f"http://127.0.0.1:{self.sandbox_port}")

    # --- environment -----------------------------------------------------------------------
    def env(self, *, via_proxy: bool = False, **extra: str) -> dict[str, str]:
        database_url = (
            _with_database(self.server_url, CHAOS_DATABASE, port=self.proxy.listen_port, host="127.0.0.1")
            if via_proxy
            else self.database_url
        )
        return stack_env(
            database_url=database_url,
            redis_url=self.redis.url(0),
            broker_url=self.redis.url(2),
            SECRET_KEY=self.secret_key,
            **{"CACHE_KEY_PREFIX": "beacon-chaos", "WORKER_METRICS_PORT": "0",
               "STATIC_ROOT": str(self.log_dir.parent / "static"), **STACK_SETTINGS, **extra},
        )

    def runner_environ(self) -> None:
        """Make this process a Beacon process of the chaos stack (before django.setup())."""
        os.environ.update(self.env())

    # --- lifecycle -------------------------------------------------------------------------
    def database_create(self) -> None:
        admin_url = _with_database(self.server_url, "postgres")
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{CHAOS_DATABASE}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{CHAOS_DATABASE}"')
        # The release step, as a deploy runs it: collectstatic (gunicorn serves the admin's files
        # through WhiteNoise's manifest, which DEBUG=false needs) and migrate.
        for step in (["collectstatic", "--noinput", "-v", "0"], ["migrate", "--noinput", "-v", "0"]):
            done = subprocess.run(
                [PYTHON, "manage.py", *step], cwd=ROOT, env=self.env(), capture_output=True, text=True,
                timeout=300, check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"{step[0]} failed:\n{done.stdout}\n{done.stderr}")

    def start_services(self) -> None:
        self.redis.start()
        self.proxy.start()
        self._start("sandbox", sandbox_vendors(self.env(), base_port=self.sandbox_port, log_dir=self.log_dir))
        wait_until(self.sandbox.healthy, timeout=30, what="sandbox vendors")

    def start_processes(self) -> None:
        # Few threads: every thread holds a PostgreSQL connection, and the server is shared.
        self._start("web", gunicorn(self.env(via_proxy=True), port=self.web_port, workers=2, threads=4, log_dir=self.log_dir))
        for name in ("worker-a", "worker-b"):
            self.worker_start(name)
        self._start("beat", celery_beat(self.env(), log_dir=self.log_dir))
        wait_until(lambda: self._http_ok(f"{self.base_url}/healthz"), timeout=30, what="gunicorn")
        for name in ("worker-a", "worker-b"):
            self.worker_wait_ready(name)

    def worker_start(self, name: str) -> ManagedProcess:
        port = self.worker_metrics_ports.setdefault(name, free_port())
        env = self.env(WORKER_METRICS_PORT=str(port), WORKER_METRICS_HOST="127.0.0.1")
        worker = celery_worker(env, name=name, concurrency=4, log_dir=self.log_dir)
        worker.log_path = self.log_dir / f"{name}-{int(time.time() * 1000)}.log"
        return self._start(name, worker)

    def worker_wait_ready(self, name: str) -> None:
        worker = self.processes[name]
        wait_until(lambda: "ready." in worker.log_path.read_text(errors="replace"), timeout=60, what=f"{name} ready")

    def _start(self, name: str, process: ManagedProcess) -> ManagedProcess:
        self.processes[name] = process.start()
        return process

    def stop(self) -> None:
        """Stop everything this stack started, whatever state it is in."""
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                process.stop(timeout=10)
        with contextlib.suppress(Exception):
            self.proxy.stop()
        with contextlib.suppress(Exception):
            self.redis.stop()

    # --- helpers ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @staticmethod
    def _http_ok(url: str) -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return response.status == 200

    def sandbox_ports(self) -> dict[str, int]:
        return {instance["name"]: instance["port"] for instance in self.sandbox.instances()}

    def redis_restart(self) -> None:
        self.redis.start()

    def processes_alive(self) -> dict[str, bool]:
        return {name: process.alive() for name, process in self.processes.items()}
