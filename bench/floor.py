"""The floor: the least a durable checkout must do, served like Beacon's web.

The app is the issue's yardstick, `../shared/bench-floor/limitapp.py` relative to the
repository (read from there, never copied): parse a JSON body, insert an order row and an
outbox row in one transaction, LPUSH the order id to Redis, answer 201. GET /hello is bare
Django. It runs under gunicorn with Beacon's web shape, on its own database and Redis.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from bench.databases import database_recreate_named
from bench.stack import STARTUP_TIMEOUT
from harness.processes import BIN, PYTHON, ROOT, ManagedProcess, RedisServer, free_port, wait_until

FLOOR_DIR = ROOT.parent / "shared" / "bench-floor"
FLOOR_APP = FLOOR_DIR / "limitapp.py"
CHECKOUT_PATH = "/checkout"
BARE_PATH = "/hello"
# The body of the floor's own load script (post.lua beside limitapp.py).
CHECKOUT_BODY = {"email": "a@example.com", "total": "19.00",
                 "lines": [{"sku": "MUG", "quantity": 2, "unit_price": "9.50"}]}
# limitapp.py's database host and role (its own settings, not configurable).
FLOOR_DATABASE_HOSTS = ("127.0.0.1", "localhost")
FLOOR_DATABASE_ROLE = "root"
PLAIN_GUNICORN_CONF = Path(__file__).resolve().parent / "plain_gunicorn.conf.py"


def plain_gunicorn(name: str, app: str, *, env: dict[str, str], port: int, workers: int, threads: int,
                   log_dir: Path, access_log: Path, chdir: Path = ROOT) -> ManagedProcess:
    """gunicorn with Beacon's web shape (gthread) and the bench's access-log format, for `app`."""
    from harness.processes import ACCESS_LOG_FORMAT

    command = [
        str(BIN / "gunicorn"), "-c", str(PLAIN_GUNICORN_CONF), app, "--chdir", str(chdir),
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
        "--worker-class", "gthread", "--log-level", "warning",
        "--access-logfile", str(access_log), "--access-logformat", ACCESS_LOG_FORMAT,
    ]
    return ManagedProcess(name, command, env=env, log_dir=log_dir)


class FloorApp:
    """limitapp.py on its own database and Redis; `stop()` ends both."""

    def __init__(self, *, server_url: str, database: str, log_dir: Path, workers: int, threads: int) -> None:
        if urlsplit(server_url).hostname not in FLOOR_DATABASE_HOSTS:
            raise ValueError(f"the floor app connects to 127.0.0.1 only; the server is {urlsplit(server_url).hostname}")
        if not FLOOR_APP.exists():
            raise FileNotFoundError(f"the floor app is missing: {FLOOR_APP} (the issue's shared/bench-floor)")
        self.server_url, self.database, self.log_dir = server_url, database, log_dir
        self.workers, self.threads = workers, threads
        self.redis = RedisServer(log_dir=log_dir)
        self.port = free_port()
        self.access_log = log_dir / "floor-access.log"
        self.web: ManagedProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FloorApp:
        database_recreate_named(self.server_url, self.database)
        self.redis.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST", "PG"))}
        # limitapp.py connects to 127.0.0.1 as root and names only the database; it names no port,
        # so libpq takes PGPORT's: the server the other systems run on.
        env.update(FLOOR_DATABASE=self.database, FLOOR_REDIS_URL=self.redis.url(0), PYTHONUNBUFFERED="1",
                   PGPORT=str(urlsplit(self.server_url).port or 5432))
        subprocess.run([PYTHON, str(FLOOR_APP), "init"], cwd=FLOOR_DIR, env=env, check=True, timeout=STARTUP_TIMEOUT,
                       capture_output=True)
        self.web = plain_gunicorn("floor-web", "limitapp:application", env=env, port=self.port, workers=self.workers,
                                  threads=self.threads, log_dir=self.log_dir, access_log=self.access_log,
                                  chdir=FLOOR_DIR).start()
        wait_until(lambda: urllib.request.urlopen(self.base_url + BARE_PATH, timeout=1).status == 200,
                   timeout=STARTUP_TIMEOUT, what="the floor's gunicorn")
        return self

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop(timeout=20)
        self.redis.stop()

    def describe(self) -> str:
        return (f"{FLOOR_APP.name} (shared/bench-floor) on gunicorn gthread {self.workers}x{self.threads}, "
                f"database {self.database}, its own Redis")
