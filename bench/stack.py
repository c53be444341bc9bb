"""The benchmark's own Beacon stack (harness/stack.py): a fresh database, a private Redis, the
sandbox vendors, gunicorn, Celery workers and beat, all real processes on loopback.

Nothing here touches the developer's database or Redis: the database `beacon_bench` is
dropped and created on the server it is given (`bench.run`'s own, bench/database_server.py, or
DATABASE_URL's for the other bench tools), and Redis is a private server on a spare port.
What the benchmark adds to the harness: a warm-up of the web, workers and sandbox below the
web's CPU priority, and workers of a given pool and count swapped between measurements.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from urllib.parse import urlsplit

from bench.load import CHECKOUT_BODY
from harness.database import database_connect, database_url
from harness.processes import ManagedProcess, broker_purge
from harness.stack import Stack, StackOptions

# BENCH_DATABASE names another database, so that engineers sharing one PostgreSQL server do not
# drop each other's bench database.
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "beacon_bench")
# The web set-up of the Procfile (3 gthread workers x 4 threads), for the floor and the checkout alike.
WEB_WORKERS = 3
WEB_THREADS = 4
# Celery threads per worker process (the Procfile's worker line, WORKER_CONCURRENCY's default).
WORKER_THREADS = 8
# Its trigger listener's dispatch threads (TRIGGER_LISTENER_DISPATCH_THREADS's default): with the
# Celery threads, the threads that deliver in one of Beacon's worker processes.
WORKER_DISPATCH_THREADS = 8
# Workers run at a lower CPU priority than the web, as the Procfile starts them: on one shared
# box the checkout is served first and the queue absorbs the difference.
WORKER_NICE = 10
# Checkouts sent to a freshly started web before it is measured (harness/stack.py, Stack._web_warm).
WEB_WARM_CHECKOUTS = 120
# A rate limit no benchmark reaches (requests per minute).
BENCH_CLIENT_RATE_LIMIT = 100_000_000
# Sandbox instance names (sandbox/README.md).
VENDOR_NAMES = ("sms-primary", "sms-fallback", "smtp-primary", "smtp-fallback")
QUEUES = ("default", "email", "sms")
# Beacon's settings in every process of the benchmark.
BENCH_SETTINGS = {"DEBUG": "false", "LOG_LEVEL": "INFO", "LOG_FORMAT": "json", "SENTRY_DSN": ""}
# Seconds a process of the stack may take to start: on a box shared by several engineers
# (load average 10 on 2 cores) a Django process's start-up alone has taken over 30 s.
STARTUP_TIMEOUT = 180


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


class BenchStack(Stack):
    """Every process of one benchmark run; `stop()` ends them all."""

    def __init__(self, *, server_url: str, log_dir: Path, warm_checkouts: int = WEB_WARM_CHECKOUTS) -> None:
        synchronous_commit = os.environ.get("BENCH_SYNCHRONOUS_COMMIT")
        super().__init__(StackOptions(
            log_dir=log_dir,
            database_url=database_url(server_url, BENCH_DATABASE),
            settings={**BENCH_SETTINGS, "CELERY_BEAT_SCHEDULE_FILENAME": str(log_dir / "celerybeat-schedule")},
            web_workers=WEB_WORKERS,
            web_threads=WEB_THREADS,
            web_access_log=True,
            worker_concurrency=WORKER_THREADS,
            nice=WORKER_NICE,
            start_timeout=STARTUP_TIMEOUT,
            warm_checkouts=warm_checkouts,
            warm_body=CHECKOUT_BODY,
            database_settings={"synchronous_commit": synchronous_commit} if synchronous_commit else {},
        ))
        self.server_url = server_url
        self.database_description = ""
        self.web_sync = False
        self.worker_spec = ("threads", 1, WORKER_THREADS)
        self.worker_env: dict[str, str] = {}

    # --- start ------------------------------------------------------------------------------
    def start(self, *, progress) -> None:
        progress(f"starting a private Redis and the sandbox, creating and migrating database {BENCH_DATABASE}")
        self.services_start()
        self.database_create()
        self.database_description = database_describe(self.database_url)
        progress(f"database: {self.database_description}")
        # This process reads the same database (delivery latencies, counts) through the ORM.
        self.runner_environ()
        import django

        django.setup()
        self.seed(client_name="bench", rate_limit_per_minute=BENCH_CLIENT_RATE_LIMIT)
        self.workers_start("threads", 1)  # before the web, so its warm-up checkouts are delivered at once
        self.web_restart(sync=False)
        self.beat_start()
        progress(
            f"stack up: web :{self.web_port} ({WEB_WORKERS} gthread workers x {WEB_THREADS} threads), "
            f"sandbox :{self.sandbox_port}, redis :{self.redis.port}, db {BENCH_DATABASE}"
        )

    # --- web --------------------------------------------------------------------------------
    @property
    def web(self) -> ManagedProcess:
        return self.processes["web"]

    def web_restart(self, *, sync: bool) -> None:
        """(Re)start gunicorn; `sync` turns on BEACON_SYNC_SEND (the "before" architecture)."""
        self.web_start(BEACON_SYNC_SEND="true" if sync else "false")
        self.web_sync = sync

    # --- workers ----------------------------------------------------------------------------
    @property
    def workers(self) -> list[ManagedProcess]:
        return [process for name, process in self.processes.items() if name.startswith("worker-")]

    def workers_start(self, pool: str, processes: int, *, concurrency: int = WORKER_THREADS, **env: str) -> None:
        """Replace the Celery workers: `processes` worker processes of `pool`, with `env` added
        to their environment.

        threads: that many Celery workers with `concurrency` threads each.
        prefork: one Celery worker with `processes` child processes (one task at a time each).
        Workers of that shape and environment that are already running are kept.
        """
        workers = self.workers
        threads = concurrency if pool == "threads" else 1
        if (workers and self.worker_spec == (pool, processes, threads) and self.worker_env == env
                and all(w.alive() for w in workers)):
            return
        self.workers_stop()
        if pool == "threads":
            names = [f"worker-threads-{i}" for i in range(processes)]
            for name in names:
                self.worker_start(name, pool="threads", concurrency=concurrency, **env)
        else:
            names = ["worker-prefork"]
            self.worker_start(names[0], pool="prefork", concurrency=processes, **env)
        self.worker_spec = (pool, processes, threads)
        self.worker_env = dict(env)
        for name in names:
            self.worker_wait_ready(name)

    def workers_stop(self) -> None:
        for name in [name for name in self.processes if name.startswith("worker-")]:
            self.processes.pop(name).stop(timeout=30)

    def worker_pids(self) -> list[int]:
        return [worker.pid for worker in self.workers]

    # --- helpers ----------------------------------------------------------------------------
    def queue_depth(self, client) -> int:
        return sum(client.llen(queue) for queue in QUEUES)

    def purge(self) -> None:
        broker_purge(self.broker_url)

    def describe(self) -> dict[str, object]:
        return {
            "web": f"gunicorn gthread, {WEB_WORKERS} workers x {WEB_THREADS} threads (Procfile web line)",
            "database": f"{self.database_description}, database {BENCH_DATABASE} on {urlsplit(self.server_url).netloc}",
            "redis": f"private redis-server on :{self.redis.port} (broker, breakers, cache)",
            "sandbox": f"sandbox_vendors on :{self.sandbox_port}",
            "pid": os.getpid(),
        }
