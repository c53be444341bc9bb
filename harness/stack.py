"""One running Beacon stack: a database, Redis, the sandbox vendors, gunicorn, Celery workers, beat.

The benchmark (bench/stack.py), the fault suite (chaos/stack.py), the multi-host suite
(cluster/stack.py, which puts each process on a host of its own) and the tests that need real
processes (the observability and browser tests) all assemble their stack here; `StackOptions`
says what differs between them. Every process is a `ManagedProcess` kept in `Stack.processes`
under a name, logs to `log_dir`, and is stopped by `Stack.stop()`, whatever state the stack is in.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from harness.database import database_recreate, database_url
from harness.dbproxy import PostgresProxy
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

# Seconds a started process gets to answer (gunicorn's /healthz, a worker's "ready."): a cold
# start on a busy shared 2-core machine.
START_TIMEOUT = 90
# Lines of each process's log printed when a run fails.
LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class StackOptions:
    """What one stack is made of; the defaults are the smallest loopback stack."""

    log_dir: Path
    # The database every Beacon process uses (`Stack.database_create()` makes it afresh).
    database_url: str
    # None: the stack's private Redis server (started by `services_start`), database 0.
    redis_url: str | None = None
    # None: the private Redis server's database `broker_db`.
    broker_url: str | None = None
    broker_db: int = 0
    # Extra environment of every process (settings such as OUTBOX_RELAY_INTERVAL).
    settings: Mapping[str, str] = field(default_factory=dict)
    # The sandbox vendors as a process of the stack (tests bring their own, see conftest.py), on
    # `sandbox_port` (0: a free range on loopback).
    sandbox: bool = True
    sandbox_port: int = 0
    # gunicorn's port (0: a free one) on the address of its host (`Stack.address_of`).
    web_port: int = 0
    web_workers: int = 2
    web_threads: int = 4
    # gunicorn writes one ACCESS_LOG_FORMAT line per request to log_dir/web-access.log (bench/load.py).
    web_access_log: bool = False
    # The web reaches PostgreSQL through a PostgresProxy the chaos suite can cut (harness/dbproxy.py).
    database_proxy: bool = False
    worker_pool: str = "threads"
    worker_concurrency: int = 4
    # Each worker exports its metrics on a port of its own (`Stack.worker_metrics_ports`).
    worker_metrics: bool = False
    # Web and workers start through deploy/with-metrics-dir, as the Procfile starts them.
    metrics_dirs: bool = False
    # Seconds a started process gets to answer (more on a box shared by several engineers).
    start_timeout: float = START_TIMEOUT
    # CPU priority of the workers and the sandbox below the web (harness/processes.py: autogroup_nice).
    nice: int = 0
    # Checkouts sent through every web thread after each web start, before anything is measured.
    warm_checkouts: int = 0
    warm_body: Mapping[str, Any] | None = None
    # Release steps run by `database_create()` after migrate's: collectstatic for DEBUG=false's manifest.
    collectstatic: bool = False
    # Database defaults set when it is created (e.g. synchronous_commit).
    database_settings: Mapping[str, str] = field(default_factory=dict)


class Stack:
    """Owns every process of one running Beacon; `stop()` ends them all."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.log_dir = options.log_dir
        self.database_url = options.database_url
        private_redis = options.redis_url is None or options.broker_url is None
        self.redis = RedisServer(log_dir=options.log_dir) if private_redis else None
        self.proxy: PostgresProxy | None = None
        if options.database_proxy:
            parts = urlsplit(options.database_url)
            self.proxy = PostgresProxy(target_host=parts.hostname or "127.0.0.1", target_port=parts.port or 5432,
                                       listen_port=free_port())
        self.processes: dict[str, ManagedProcess] = {}
        self.worker_metrics_ports: dict[str, int] = {}
        self.web_port = options.web_port or free_port()
        self.sandbox_port = options.sandbox_port or (sandbox_base_port() if options.sandbox else 0)
        self.sandbox = SandboxControl(f"http://{self.address_of('sandbox')}:{self.sandbox_port}")
        self.api_key = ""

    # --- addresses and environment ---------------------------------------------------------
    @property
    def redis_url(self) -> str:
        return self.options.redis_url or self.redis.url(0)

    @property
    def broker_url(self) -> str:
        return self.options.broker_url or self.redis.url(self.options.broker_db)

    @property
    def base_url(self) -> str:
        """Where the API is served (a load balancer's address on several hosts)."""
        return f"http://{self.address_of('web')}:{self.web_port}"

    def address_of(self, name: str) -> str:
        """The address the process `name` listens on (every process on loopback here)."""
        return "127.0.0.1"

    def command_placed(self, name: str, command: list[str]) -> list[str]:
        """`command` run where the process `name` belongs (here: this machine, as it is)."""
        return command

    @property
    def access_log(self) -> Path:
        return self.log_dir / "web-access.log"

    def env(self, *, via_proxy: bool = False, **extra: str) -> dict[str, str]:
        """The environment of a Beacon process of this stack; `via_proxy`: its database through the proxy."""
        url = (database_url(self.database_url, host="127.0.0.1", port=self.proxy.listen_port)
               if via_proxy and self.proxy else self.database_url)
        return stack_env(database_url=url, redis_url=self.redis_url, broker_url=self.broker_url,
                         **{**self.options.settings, **extra})

    def runner_environ(self) -> None:
        """Make this process a Beacon process of the stack (before django.setup())."""
        os.environ.update(self.env())

    # --- database and services ---------------------------------------------------------------
    def database_create(self) -> None:
        """The database afresh, then the release step as a deploy runs it (collectstatic, migrate)."""
        database_recreate(self.database_url, settings=dict(self.options.database_settings))
        steps = [["collectstatic", "--noinput", "-v", "0"]] if self.options.collectstatic else []
        for step in [*steps, ["migrate", "--noinput", "-v", "0"]]:
            self.manage(*step)

    def manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        """`manage.py args` as a process of this stack; raises RuntimeError with its output if it fails."""
        done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env or self.env(), capture_output=True,
                              text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def services_start(self) -> None:
        """The private Redis, the database proxy and the sandbox vendors, whichever the options ask for."""
        if self.redis is not None:
            self.redis.start()
        if self.proxy is not None:
            self.proxy.start()
        if self.options.sandbox:
            self.sandbox_start()

    def sandbox_start(self) -> None:
        """The sandbox vendors, waited for until they answer."""
        # The sandbox stands for vendors on other machines: with `nice` it does not take the web's CPU.
        self.process_start("sandbox", sandbox_vendors(self.env(), base_port=self.sandbox_port, log_dir=self.log_dir,
                                                      nice=self.options.nice, host=self.address_of("sandbox")))
        wait_until(self.sandbox.healthy, timeout=self.options.start_timeout, what="sandbox vendors")

    def sandbox_ports(self) -> dict[str, int]:
        return {instance["name"]: instance["port"] for instance in self.sandbox.instances()}

    def seed(self, *, client_name: str, rate_limit_per_minute: int, vendor_timeout: float | None = None,
             breaker: Mapping[str, Any] | None = None) -> str:
        """Templates, the four sandbox vendors (with `breaker`'s settings) and an API client; returns its key."""
        from checkout.api_keys import api_client_create
        from notifications.demo import demo_templates_install, demo_vendors_install
        from notifications.models import Vendor

        demo_templates_install()
        timeout = {} if vendor_timeout is None else {"timeout": vendor_timeout}
        demo_vendors_install(host=self.address_of("sandbox"), ports=self.sandbox_ports(), **timeout)
        if breaker:
            Vendor.objects.update(**breaker)
        _client, self.api_key = api_client_create(name=client_name, rate_limit_per_minute=rate_limit_per_minute)
        return self.api_key

    # --- processes -------------------------------------------------------------------------
    def process_start(self, name: str, process: ManagedProcess) -> ManagedProcess:
        """Start `process` where `name` belongs and keep it as `name` (replacing a stopped one of that name)."""
        process.command = self.command_placed(name, process.command)
        self.processes[name] = process.start()
        return process

    def processes_start(self, *, workers: tuple[str, ...] = ("worker",), beat: bool = True) -> None:
        """Web, workers and beat, each waited for until it serves."""
        for name in workers:  # before the web, so its warm-up checkouts are delivered at once
            self.worker_start(name)
        if beat:
            self.beat_start()
        self.web_start()
        for name in workers:
            self.worker_wait_ready(name)

    def web_start(self, name: str = "web", *, wait: bool = True, **extra: str) -> ManagedProcess:
        """(Re)start gunicorn (`extra`: environment on top of the stack's); `wait`: until it answers."""
        if name in self.processes:
            self.processes[name].stop()
        options = self.options
        process = gunicorn(self.env(via_proxy=True, **extra), port=self.web_port, workers=options.web_workers,
                           threads=options.web_threads, log_dir=self.log_dir, host=self.address_of(name),
                           access_log=self.access_log if options.web_access_log else None)
        process.name = name
        process.log_path = self.log_dir / f"{name}.log"
        self._with_metrics_dir(process, "web")
        self.process_start(name, process)
        if wait:
            self.web_wait_ready(name, path="/healthz")
        if options.warm_checkouts and self.api_key:
            self._web_warm()
        return process

    def web_wait_ready(self, name: str = "web", *, path: str = "/readyz") -> None:
        """Until the web `name` answers 200 on `path` (/readyz: its database, Redis and broker too)."""
        url = f"http://{self.address_of(name)}:{self.web_port}{path}"
        wait_until(lambda: self.http_ok(url), timeout=self.options.start_timeout, what=f"{name} ({self.processes[name].log_path})")

    def worker_start(self, name: str = "worker", *, node: str | None = None, pool: str | None = None,
                     concurrency: int | None = None, log_path: Path | None = None, **extra: str) -> ManagedProcess:
        """A Celery worker on every queue, kept as `name`; `node` (default `name`) begins its Celery
        node name and its log's, `<node>-<ms>.log`, a fresh file at each start (its "ready." line is
        this start's), unless `log_path` says where (emptied first)."""
        node = node or name
        if self.options.worker_metrics:
            port = self.worker_metrics_ports.setdefault(name, free_port())
            extra = {"WORKER_METRICS_PORT": str(port), "WORKER_METRICS_HOST": "127.0.0.1", **extra}
        process = celery_worker(self.env(**extra), name=node, pool=pool or self.options.worker_pool,
                                concurrency=concurrency or self.options.worker_concurrency, log_dir=self.log_dir,
                                nice=self.options.nice)
        process.log_path = log_path or self.log_dir / f"{node}-{int(time.time() * 1000)}.log"
        process.log_path.unlink(missing_ok=True)
        self._with_metrics_dir(process, name)
        return self.process_start(name, process)

    def worker_wait_ready(self, name: str = "worker", *, timeout: float | None = None) -> None:
        """Until the worker `name` consumes; RuntimeError with its log if it exits first."""
        worker = self.processes[name]
        timeout = timeout or self.options.start_timeout

        def ready() -> bool:
            if not worker.alive():
                raise RuntimeError(f"{name} exited:\n{worker.log_tail()}")
            return "ready." in worker.log_path.read_text(errors="replace")

        deadline = time.monotonic() + timeout
        while not ready():  # not wait_until: an exited worker must fail at once, not time out
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {name} ({worker.log_path})")
            time.sleep(0.2)

    def beat_start(self) -> ManagedProcess:
        return self.process_start("beat", celery_beat(self.env(), log_dir=self.log_dir))

    def process_restart(self, name: str) -> None:
        """Start the process `name` again after it died (a worker with a fresh log, waited for)."""
        if name.startswith("worker"):
            self.worker_start(name)
            self.worker_wait_ready(name)
        else:
            self.processes[name].start()

    def processes_alive(self) -> dict[str, bool]:
        return {name: process.alive() for name, process in self.processes.items()}

    def log_tails_print(self, file: TextIO = sys.stderr) -> None:
        """The last lines of every process's log, each under its name and path."""
        for name, process in self.processes.items():
            print(f"\n--- last lines of {name} ({process.log_path})", file=file)
            print(process.log_tail(LOG_TAIL_LINES), file=file)
        file.flush()

    def stop(self, timeout: float = 15) -> None:
        """Stop everything this stack started, the last started first, whatever state it is in."""
        for process in reversed(list(self.processes.values())):
            with contextlib.suppress(Exception):
                process.stop(timeout=timeout)
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                self.proxy.stop()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.stop()

    # --- helpers ---------------------------------------------------------------------------
    @staticmethod
    def http_ok(url: str) -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - the stack's own processes
            return response.status == 200

    def _with_metrics_dir(self, process: ManagedProcess, group: str) -> None:
        """Run `process` through deploy/with-metrics-dir GROUP, as the Procfile does (nice stays outside)."""
        if not self.options.metrics_dirs:
            return
        at = process.command.index(next(part for part in process.command if part.endswith(("gunicorn", "celery"))))
        process.command[at:at] = ["deploy/with-metrics-dir", group]

    def _web_warm(self) -> None:
        """Checkouts through every gunicorn thread before anything is measured: each thread's
        first requests open its database connection, prepare its statements and connect its
        publisher, which a fresh web would otherwise put into the first measured point."""
        body = self.log_dir / "warm-body.json"
        body.write_text(json.dumps(self.options.warm_body))
        threads = self.options.web_workers * self.options.web_threads
        command = ["hey", "-n", str(self.options.warm_checkouts), "-c", str(threads), "-m", "POST", "-T",
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
        next measurement does not share the CPU with an earlier backlog (needs django.setup())."""
        from notifications.models import Notification, NotificationStatus, NotificationTrigger

        busy = (NotificationStatus.PENDING, NotificationStatus.SENDING, NotificationStatus.RETRYING)
        wait_until(lambda: not NotificationTrigger.objects.filter(dispatched_at__isnull=True).exists()
                   and not Notification.objects.filter(status__in=busy).exists(),
                   timeout=timeout, interval=0.5, what="the notification backlog to drain")
