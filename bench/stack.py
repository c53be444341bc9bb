"""The benchmark's own Beacon stack: a fresh database, a private Redis, the sandbox vendors,
gunicorn, Celery workers and beat, all real processes on loopback (harness/processes.py).

Nothing here touches the developer's database or Redis: the database `beacon_bench` is
dropped and created on the DATABASE_URL server, and Redis is a private server on a spare port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench.load import CHECKOUT_BODY
from harness.processes import (
    PYTHON,
    ROOT,
    ManagedProcess,
    RedisServer,
    broker_purge,
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

# BENCH_DATABASE names another database, so that engineers sharing one PostgreSQL server do not
# drop each other's bench database.
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "beacon_bench")
# The web set-up of the Procfile (3 gthread workers x 4 threads), for the floor and the checkout alike.
WEB_WORKERS = 3
WEB_THREADS = 4
# Threads per Celery worker process (the Procfile's worker line).
WORKER_THREADS = 16
# Workers run at a lower CPU priority than the web, as the Procfile starts them: on one shared
# box the checkout is served first and the queue absorbs the difference.
WORKER_NICE = 10
# Checkouts sent to a freshly started web before it is measured (see Stack._web_warm).
WEB_WARM_CHECKOUTS = 120
# A rate limit no benchmark reaches (requests per minute).
BENCH_CLIENT_RATE_LIMIT = 100_000_000
# Sandbox instance ports relative to the base port (sandbox/README.md).
SANDBOX_OFFSETS = {"sms-primary": 1, "sms-fallback": 2, "smtp-primary": 25, "smtp-fallback": 26}
VENDOR_NAMES = tuple(SANDBOX_OFFSETS)
QUEUES = ("default", "email", "sms")
# Seconds a process of the stack may take to start: on a box shared by several engineers
# (load average 10 on 2 cores) a Django process's start-up alone has taken over 30 s.
STARTUP_TIMEOUT = 180


def _database_urls(server_url: str) -> tuple[str, str]:
    """(admin URL on the `postgres` database, URL of the bench database) on the same server."""
    parts = urlsplit(server_url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    bench = urlunsplit(parts._replace(path=f"/{BENCH_DATABASE}"))
    return admin, bench


def database_connect(url: str) -> psycopg.Connection:
    """An autocommit connection to a `postgres://` URL (Django's spelling; libpq wants `postgresql://`)."""
    return psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True, connect_timeout=5)


def database_recreate(server_url: str) -> str:
    """Drop and create `beacon_bench` on the server of `server_url`; returns its URL."""
    admin, bench = _database_urls(server_url)
    with database_connect(admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
        if os.environ.get("BENCH_SYNCHRONOUS_COMMIT"):
            conn.execute(f'ALTER DATABASE "{BENCH_DATABASE}" SET synchronous_commit = {os.environ["BENCH_SYNCHRONOUS_COMMIT"]}')
    return bench


# The settings that decide what a commit costs. With either off (the embedded development
# server of scripts/devservices.py turns both off), a commit skips the disk flush.
DURABILITY_SETTINGS = ("fsync", "synchronous_commit")


def database_describe(database_url: str) -> str:
    """'PostgreSQL 15.20, fsync on, synchronous_commit on': the server and the durability
    settings a session on `database_url` gets (a database or connection override included),
    flagged when a commit skips the disk flush, since such numbers are not a durable server's."""
    with database_connect(database_url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
        # The names are this module's constants, not input.
        values = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in DURABILITY_SETTINGS}
    text = f"PostgreSQL {version}, " + ", ".join(f"{name} {value}" for name, value in values.items())
    if "off" in values.values():
        text += " (commits skip the disk flush: not comparable with a durable server)"
    return text


def stop_on_sigterm() -> None:
    """Let a TERM (make interrupted, a CI timeout, `kill`) unwind like Ctrl-C, through the
    `finally` that stops every process the benchmark started, instead of orphaning them."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


class Stack:
    """Owns every process of one benchmark run; `stop()` ends them all."""

    def __init__(self, *, server_url: str, log_dir: Path, warm_checkouts: int = WEB_WARM_CHECKOUTS) -> None:
        self.log_dir = log_dir
        self.warm_checkouts = warm_checkouts
        self.server_url = server_url
        self.redis = RedisServer(log_dir=log_dir)
        self.database_url = ""
        self.database_description = ""
        self.env: dict[str, str] = {}
        self.sandbox_port = 0
        self.web_port = free_port()
        self.sandbox_proc: ManagedProcess | None = None
        self.web: ManagedProcess | None = None
        self.web_sync = False
        # gunicorn's access log: the time each request spent in the server (bench/load.py reads it).
        self.access_log = log_dir / "web-access.log"
        self.workers: list[ManagedProcess] = []
        self.worker_spec = ("threads", 1, WORKER_THREADS)
        self.beat: ManagedProcess | None = None
        self.api_key = ""
        self.control: SandboxControl | None = None

    # --- start ------------------------------------------------------------------------------
    def start(self, *, progress) -> None:
        progress(f"creating database {BENCH_DATABASE} and starting a private Redis")
        self.database_url = database_recreate(self.server_url)
        self.database_description = database_describe(self.database_url)
        progress(f"database: {self.database_description}")
        self.redis.start()
        self.env = stack_env(
            database_url=self.database_url,
            redis_url=self.redis.url(0),
            DEBUG="false",
            LOG_LEVEL="INFO",
            LOG_FORMAT="json",
            SENTRY_DSN="",
            CELERY_BEAT_SCHEDULE_FILENAME=str(self.log_dir / "celerybeat-schedule"),
        )
        progress(f"migrating {BENCH_DATABASE}")
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=self.env, check=True, timeout=300
        )
        # This process reads the same database (delivery latencies, counts) through the ORM.
        os.environ.update(self.env)
        import django

        django.setup()
        self.sandbox_port = sandbox_base_port()
        # The sandbox stands for vendors on other machines: it runs at the workers' lower
        # priority, so the simulated outside world does not take the web's CPU either.
        self.sandbox_proc = sandbox_vendors(self.env, base_port=self.sandbox_port, log_dir=self.log_dir,
                                            nice=WORKER_NICE).start()
        self.control = SandboxControl(f"http://127.0.0.1:{self.sandbox_port}")
        wait_until(self.control.healthy, timeout=STARTUP_TIMEOUT, what="sandbox vendors")
        self._seed()
        self.workers_start("threads", 1)  # before the web, so its warm-up checkouts are delivered at once
        self.web_start(sync=False)
        self.beat = celery_beat(self.env, log_dir=self.log_dir).start()
        progress(
            f"stack up: web :{self.web_port} ({WEB_WORKERS} gthread workers x {WEB_THREADS} threads), "
            f"sandbox :{self.sandbox_port}, redis :{self.redis.port}, db {BENCH_DATABASE}"
        )

    def _seed(self) -> None:
        """Vendors pointing at the sandbox, templates, and an API client with a huge rate limit."""
        from checkout.api_keys import api_client_create
        from notifications.demo import demo_templates_install, demo_vendors_install

        ports = {name: self.sandbox_port + offset for name, offset in SANDBOX_OFFSETS.items()}
        demo_vendors_install(host="127.0.0.1", ports=ports)
        demo_templates_install()
        _, self.api_key = api_client_create(name="bench", rate_limit_per_minute=BENCH_CLIENT_RATE_LIMIT)

    # --- web --------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def web_start(self, *, sync: bool) -> None:
        """(Re)start gunicorn; `sync` turns on BEACON_SYNC_SEND (the "before" architecture)."""
        if self.web is not None:
            self.web.stop()
        env = dict(self.env, BEACON_SYNC_SEND="true" if sync else "false")
        self.web = gunicorn(env, port=self.web_port, workers=WEB_WORKERS, threads=WEB_THREADS, log_dir=self.log_dir,
                            access_log=self.access_log)
        self.web.name = f"web-{'sync' if sync else 'async'}"
        self.web.start()
        self.web_sync = sync
        wait_until(lambda: urllib.request.urlopen(self.base_url + "/healthz", timeout=1).status == 200,
                   timeout=STARTUP_TIMEOUT, what="gunicorn")
        if self.api_key:
            self._web_warm()

    def _web_warm(self) -> None:
        """Checkouts through every gunicorn thread before anything is measured: each thread's
        first requests open its database connection, prepare its statements and connect its
        publisher, which a fresh web would otherwise put into the first measured point."""
        body = self.log_dir / "warm-body.json"
        body.write_text(json.dumps(CHECKOUT_BODY))
        command = ["hey", "-n", str(self.warm_checkouts), "-c", str(WEB_WORKERS * WEB_THREADS), "-m", "POST", "-T",
                   "application/json", "-D", str(body), "-H", f"Authorization: Bearer {self.api_key}",
                   self.base_url + "/api/v1/checkouts/"]
        try:
            warm = subprocess.run(command, capture_output=True, text=True, timeout=120)
            problem = f"exit status {warm.returncode}: {warm.stderr.strip()[-300:]}" if warm.returncode else ""
        except subprocess.TimeoutExpired:
            problem = "no end within 120 s"
        if problem:  # a cold first point is a worse measurement, not a reason to stop the run
            print(f"warning: warming the web failed ({problem}); measuring it cold", flush=True)
        self.deliveries_idle_wait()

    def deliveries_idle_wait(self, timeout: float = 180) -> None:
        """Wait until every trigger is dispatched and no notification waits to be sent, so the
        next measurement does not share the CPU with an earlier backlog."""
        from notifications.models import Notification, NotificationStatus, NotificationTrigger

        busy = (NotificationStatus.PENDING, NotificationStatus.SENDING, NotificationStatus.RETRYING)
        wait_until(lambda: not NotificationTrigger.objects.filter(dispatched_at__isnull=True).exists()
                   and not Notification.objects.filter(status__in=busy).exists(),
                   timeout=timeout, interval=0.5, what="the notification backlog to drain")

    # --- workers ----------------------------------------------------------------------------
    def workers_start(self, pool: str, processes: int) -> None:
        """Replace the Celery workers: `processes` worker processes of `pool`.

        threads: that many Celery workers with WORKER_THREADS threads each.
        prefork: one Celery worker with `processes` child processes (one task at a time each).
        Workers of that shape that are already running are kept.
        """
        if self.workers and self.worker_spec[:2] == (pool, processes) and all(w.alive() for w in self.workers):
            return
        self.workers_stop()
        if pool == "threads":
            self.workers = [
                celery_worker(self.env, name=f"worker-threads-{i}", pool="threads", concurrency=WORKER_THREADS,
                              log_dir=self.log_dir, nice=WORKER_NICE).start()
                for i in range(processes)
            ]
        else:
            self.workers = [
                celery_worker(self.env, name="worker-prefork", pool="prefork", concurrency=processes,
                              log_dir=self.log_dir, nice=WORKER_NICE).start()
            ]
        self.worker_spec = (pool, processes, WORKER_THREADS if pool == "threads" else 1)
        self._wait_workers_ready()

    def _wait_workers_ready(self) -> None:
        def ready() -> bool:
            for worker in self.workers:
                if not worker.alive():
                    raise RuntimeError(f"{worker.name} exited:\n{worker.log_tail()}")
                if "ready." not in worker.log_path.read_text(errors="replace"):
                    return False
            return True

        wait_until(ready, timeout=STARTUP_TIMEOUT, what="celery workers")

    def workers_stop(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=30)
            # A fresh log per start, so the "ready." check sees this start's line.
            with_suffix = worker.log_path.with_suffix(f".{int(time.time())}.log")
            if worker.log_path.exists():
                worker.log_path.rename(with_suffix)
        self.workers = []

    def worker_pids(self) -> list[int]:
        return [worker.pid for worker in self.workers]

    # --- helpers ----------------------------------------------------------------------------
    def queue_depth(self, client) -> int:
        return sum(client.llen(queue) for queue in QUEUES)

    def purge(self) -> None:
        broker_purge(self.redis.url(0))

    def stop(self) -> None:
        for proc in [self.beat, *self.workers, self.web, self.sandbox_proc]:
            if proc is not None:
                proc.stop(timeout=20)
        self.redis.stop()

    def describe(self) -> dict[str, object]:
        return {
            "web": f"gunicorn gthread, {WEB_WORKERS} workers x {WEB_THREADS} threads (Procfile web line)",
            "database": f"{self.database_description}, database {BENCH_DATABASE} on {urlsplit(self.server_url).netloc}",
            "redis": f"private redis-server on :{self.redis.port} (broker, breakers, cache)",
            "sandbox": f"sandbox_vendors on :{self.sandbox_port}",
            "pid": os.getpid(),
        }
