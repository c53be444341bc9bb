"""The peer's processes: its database, its own Redis (broker), gunicorn with Beacon's web shape
and Celery workers with Beacon's worker shape, sending to the bench's sandbox vendors."""

from __future__ import annotations

import os
import secrets
import subprocess
import urllib.request
from pathlib import Path

import redis

from bench.databases import database_recreate_named
from bench.floor import plain_gunicorn
from bench.stack import STARTUP_TIMEOUT
from harness.processes import BIN, PYTHON, ROOT, ManagedProcess, RedisServer, free_port, wait_until

# Sandbox instances the peer sends through (no fallback vendor: the usual pattern has one of each).
SMTP_OFFSET, TWILIO_OFFSET = 25, 1
SMTP_INSTANCE, TWILIO_INSTANCE = "smtp-primary", "sms-primary"
CREATE_TOKEN = (
    "from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token; "
    "print(Token.objects.create(user=User.objects.create_user('bench')).key)"
)


class PeerStack:
    """Owns the peer's processes; `stop()` ends them all."""

    def __init__(self, *, server_url: str, database: str, log_dir: Path, sandbox_port: int, web_workers: int,
                 web_threads: int, worker_threads: int, worker_nice: int) -> None:
        self.server_url, self.database, self.log_dir = server_url, database, log_dir
        self.sandbox_port = sandbox_port
        self.web_workers, self.web_threads = web_workers, web_threads
        self.worker_threads, self.worker_nice = worker_threads, worker_nice
        self.redis = RedisServer(log_dir=log_dir)
        self.port = free_port()
        self.access_log = log_dir / "peer-access.log"
        self.database_url = ""
        self.env: dict[str, str] = {}
        self.token = ""
        self.web: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []
        self._started_workers = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, worker_processes: int) -> PeerStack:
        self.database_url = database_recreate_named(self.server_url, self.database)
        self.redis.start()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST", "CELERY_"))}
        self.env.update(
            DJANGO_SETTINGS_MODULE="bench.peer.settings", PYTHONUNBUFFERED="1",
            PEER_SECRET_KEY=secrets.token_urlsafe(40), PEER_DATABASE_URL=self.database_url,
            PEER_BROKER_URL=self.redis.url(0), PEER_SMTP_PORT=str(self.sandbox_port + SMTP_OFFSET),
            PEER_TWILIO_URL=f"http://127.0.0.1:{self.sandbox_port + TWILIO_OFFSET}",
        )
        django = [PYTHON, "-m", "django"]
        subprocess.run([*django, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=self.env, check=True, timeout=300)
        created = subprocess.run([*django, "shell", "-c", CREATE_TOKEN], cwd=ROOT, env=self.env, check=True,
                                 timeout=120, capture_output=True, text=True)
        self.token = created.stdout.strip().splitlines()[-1]
        for _ in range(worker_processes):
            self.worker_add()
        self.web = plain_gunicorn("peer-web", "bench.peer.wsgi:application", env=self.env, port=self.port,
                                  workers=self.web_workers, threads=self.web_threads, log_dir=self.log_dir,
                                  access_log=self.access_log).start()
        wait_until(lambda: urllib.request.urlopen(self.base_url + "/healthz", timeout=1).status == 200,
                   timeout=STARTUP_TIMEOUT, what="the peer's gunicorn")
        return self

    # --- workers ----------------------------------------------------------------------------
    def worker_add(self) -> ManagedProcess:
        """Start one more Celery worker (threads pool, Beacon's shape) and wait until it is ready."""
        self._started_workers += 1
        name = f"peer-worker-{self._started_workers}"
        command = [str(BIN / "celery"), "-A", "bench.peer.celery_app", "worker", "--pool", "threads", "--concurrency",
                   str(self.worker_threads), "--hostname", f"{name}-{os.getpid()}@%h", "--loglevel", "INFO",
                   "--without-gossip", "--without-mingle", "--without-heartbeat"]
        worker = ManagedProcess(name, command, env=self.env, log_dir=self.log_dir, nice=self.worker_nice).start()
        self.workers.append(worker)

        def ready() -> bool:
            if not worker.alive():
                raise RuntimeError(f"{worker.name} exited:\n{worker.log_tail()}")
            return "ready." in worker.log_path.read_text(errors="replace")

        wait_until(ready, timeout=STARTUP_TIMEOUT, what=worker.name)
        return worker

    def worker_kill(self) -> None:
        """SIGKILL the oldest worker (its prefetched and running tasks die with it) and start another."""
        victim = self.workers.pop(0)
        victim.kill()
        self.worker_add()

    def workers_signal(self, sig: int) -> None:
        for worker in self.workers:
            worker.signal(sig)

    # --- what it holds ----------------------------------------------------------------------
    def queue_depth(self) -> int:
        """Messages waiting in the peer's broker (Celery's default queue)."""
        try:
            return int(redis.Redis.from_url(self.redis.url(0), socket_timeout=2).llen("celery"))
        except redis.RedisError:
            return -1

    def orders_committed(self, emails: list[str]) -> set[str]:
        """The emails among `emails` that have a committed order in the peer's database."""
        from bench.stack import database_connect

        with database_connect(self.database_url) as conn:
            rows = conn.execute("SELECT customer_email FROM peer_order WHERE customer_email = ANY(%s)", [emails])
            return {row[0] for row in rows}

    def orders_count(self) -> int:
        from bench.stack import database_connect

        with database_connect(self.database_url) as conn:
            return int(conn.execute("SELECT count(*) FROM peer_order").fetchone()[0])

    def stop(self) -> None:
        for proc in [*self.workers, self.web]:
            if proc is not None:
                proc.stop(timeout=20)
        self.redis.stop()

    def describe(self) -> str:
        return (f"DRF view + on_commit(delay) + Celery task (defaults, autoretry_for) on gunicorn gthread "
                f"{self.web_workers}x{self.web_threads}, {len(self.workers)} threads worker(s) x{self.worker_threads}, "
                f"database {self.database}, its own Redis broker")
