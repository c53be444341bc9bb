"""Beacon on several hosts: which host runs what, and how to start, kill and restart each one.

    db        PostgreSQL (a fresh cluster of its own)      10.231.26.10:5432
    pgbouncer PgBouncer, transaction mode                  10.231.26.11:6432
    redis     Redis: breakers, rate limits, cache, broker  10.231.26.20:6379
    rmq1..3   RabbitMQ nodes (cluster/rabbitmq.py)         10.231.26.21-23:5672
    vendors   the sandbox vendors                          10.231.26.30:8100-8126
    lb        HAProxy                                      10.231.26.40:80
    web1, 2   gunicorn                                     10.231.26.41-42:8000
    beat      celery beat (relay, sweeper)                 10.231.26.50
    w1..w4    Celery workers                               10.231.26.51-54
    runner    this harness: load, counting, faults         10.231.26.2

Web, workers and beat reach PostgreSQL only through PgBouncer (`DATABASE_SERVER_SIDE_BINDING=false`);
migrations and the runner's counting go to PostgreSQL directly, like a release job and an operator.
The stack duck-types `chaos.stack.ChaosStack` (`base_url`, `sandbox`, `processes`), so the chaos
suite's load and inbox counting (chaos/load.py, chaos/scenarios/common.py) work unchanged.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
import urllib.request
from pathlib import Path

import psycopg

from chaos.stack import STACK_SETTINGS
from cluster import services
from cluster.network import SUBNET, Host, in_namespace, namespace_kill
from cluster.rabbitmq import RabbitCluster, broker_url
from harness.processes import (
    PYTHON,
    ROOT,
    ManagedProcess,
    celery_beat,
    celery_worker,
    gunicorn,
    sandbox_vendors,
    stack_env,
    wait_until,
)
from sandbox.client import SandboxControl

DATABASE = "beacon"
WEB_PORT = 8000
SANDBOX_BASE_PORT = 8100
WORKER_HOSTS = ("w1", "w2", "w3", "w4")
RABBITMQ_HOSTS = ("rmq1", "rmq2", "rmq3")
HOSTS = {
    "runner": Host("runner", f"{SUBNET}.2"),
    "db": Host("db", f"{SUBNET}.10"),
    "pgbouncer": Host("pgbouncer", f"{SUBNET}.11"),
    "redis": Host("redis", f"{SUBNET}.20"),
    **{name: Host(name, f"{SUBNET}.{21 + i}") for i, name in enumerate(RABBITMQ_HOSTS)},
    "vendors": Host("vendors", f"{SUBNET}.30"),
    "lb": Host("lb", f"{SUBNET}.40"),
    "web1": Host("web1", f"{SUBNET}.41"),
    "web2": Host("web2", f"{SUBNET}.42"),
    "beat": Host("beat", f"{SUBNET}.50"),
    **{name: Host(name, f"{SUBNET}.{51 + i}") for i, name in enumerate(WORKER_HOSTS)},
}
# Threads per worker host and per gunicorn worker: every thread may hold a PgBouncer client
# connection, and all hosts share this machine's two cores.
WORKER_CONCURRENCY = 4
WEB_WORKERS, WEB_THREADS = 2, 4


class ClusterStack:
    def __init__(self, *, log_dir: Path, run_dir: Path, worker_hosts: int = 2) -> None:
        self.log_dir, self.run_dir = log_dir, run_dir
        self.hosts = HOSTS
        self.worker_hosts = list(WORKER_HOSTS[:worker_hosts])
        self.secret_key = "cluster-" + secrets.token_urlsafe(48)
        self.processes: dict[str, ManagedProcess] = {}
        self.broker_url = self.redis_url(2)
        self.sandbox = SandboxControl(f"http://{self.address('vendors')}:{SANDBOX_BASE_PORT}")
        self.rabbit = RabbitCluster([self.hosts[name] for name in RABBITMQ_HOSTS], run_dir, log_dir)

    # --- addresses and environment ---------------------------------------------------------
    def address(self, host: str) -> str:
        return self.hosts[host].address

    def redis_url(self, db: int) -> str:
        return f"redis://{self.address('redis')}:{services.REDIS_PORT}/{db}"

    @property
    def base_url(self) -> str:
        return f"http://{self.address('lb')}:{services.HTTP_PORT}"

    @property
    def direct_database_url(self) -> str:
        return f"postgres://root@{self.address('db')}:{services.POSTGRES_PORT}/{DATABASE}"

    @property
    def pooled_database_url(self) -> str:
        return f"postgres://root@{self.address('pgbouncer')}:{services.PGBOUNCER_PORT}/{DATABASE}"

    def env(self, *, direct: bool = False, **extra: str) -> dict[str, str]:
        allowed = ",".join(self.address(name) for name in ("lb", "web1", "web2"))
        return stack_env(
            database_url=self.direct_database_url if direct else self.pooled_database_url,
            redis_url=self.redis_url(0),
            broker_url=self.broker_url,
            SECRET_KEY=self.secret_key,
            **{
                "CACHE_KEY_PREFIX": "beacon-cluster", "WORKER_METRICS_PORT": "0", **STACK_SETTINGS,
                # Transaction pooling: no prepared statements (PgBouncer 1.18 cannot keep them).
                "DATABASE_SERVER_SIDE_BINDING": "false", "ALLOWED_HOSTS": allowed,
                # The sandbox vendors live on the cluster's private subnet and speak plain http.
                "VENDOR_EGRESS_ALLOWED_NETWORKS": f"{SUBNET}.0/24", "VENDOR_EGRESS_ALLOW_HTTP": "true", **extra,
            },
        )

    def runner_environ(self) -> None:
        """Make this process a Beacon process of the cluster (before django.setup()), reading PostgreSQL directly."""
        os.environ.update(self.env(direct=True))

    # --- lifecycle -------------------------------------------------------------------------
    def start_services(self) -> None:
        """PostgreSQL (with the database), PgBouncer, Redis and the sandbox vendors, each on its host."""
        self._start("db", services.postgres(self.hosts["db"], self.run_dir, self.log_dir))
        wait_until(self._database_create, timeout=60, interval=0.5, what="PostgreSQL on db")
        self._start("pgbouncer", services.pgbouncer(self.hosts["pgbouncer"], self.hosts["db"], self.run_dir, self.log_dir))
        self._start("redis", services.redis(self.hosts["redis"], self.run_dir, self.log_dir))
        sandbox = sandbox_vendors(self.env(), base_port=SANDBOX_BASE_PORT, log_dir=self.log_dir, host=self.address("vendors"))
        self._start("vendors", sandbox, host="vendors")
        wait_until(self.sandbox.healthy, timeout=60, what="sandbox vendors")
        wait_until(self._pgbouncer_answers, timeout=30, what="PgBouncer")

    def rabbitmq_start(self) -> None:
        """Boot the three RabbitMQ nodes (they find each other on their own; see rabbitmq_wait)."""
        self.rabbit.prepare()
        for name in RABBITMQ_HOSTS:
            self.processes[name] = self.rabbit.start(self.hosts[name])

    def rabbitmq_wait(self, *, timeout: float = 180) -> None:
        """Until every node reports the three of them running (quorum queues then get three replicas)."""
        first = self.hosts[RABBITMQ_HOSTS[0]]
        wait_until(lambda: len(self.rabbit.running_nodes(first)) == len(RABBITMQ_HOSTS), timeout=timeout, interval=2,
                   what="a three-node RabbitMQ cluster")

    def broker_switch(self, url: str) -> None:
        """Restart web, workers and beat on another broker (a deploy that changes CELERY_BROKER_URL)."""
        self.broker_url = url
        for name in ("web1", "web2", *self.worker_hosts, "beat"):
            self.processes[name].stop(timeout=20)
        for name in ("web1", "web2"):
            self.web_start(name)
        for name in self.worker_hosts:
            self.worker_start(name)
        self._start("beat", celery_beat(self.env(), log_dir=self.log_dir), host="beat")
        for name in ("web1", "web2"):
            self.web_wait_ready(name)
        for name in self.worker_hosts:
            self.worker_wait_ready(name)

    @property
    def rabbitmq_url(self) -> str:
        return broker_url([self.hosts[name] for name in RABBITMQ_HOSTS])

    def migrate(self) -> None:
        """The release job: migrations straight to PostgreSQL (never through a transaction pooler)."""
        migrate = subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT, env=self.env(direct=True), capture_output=True, text=True, timeout=300, check=False,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"migrate failed:\n{migrate.stdout}\n{migrate.stderr}")

    def start_processes(self) -> None:
        for web in ("web1", "web2"):
            self.web_start(web)
        self._start("lb", services.haproxy(self.hosts["lb"], [self.hosts["web1"], self.hosts["web2"]], WEB_PORT,
                                           self.run_dir, self.log_dir))
        for name in self.worker_hosts:
            self.worker_start(name)
        self._start("beat", celery_beat(self.env(), log_dir=self.log_dir), host="beat")
        wait_until(lambda: self.http_ok(f"{self.base_url}/readyz"), timeout=60, what="HAProxy to a ready web")
        for name in self.worker_hosts:
            self.worker_wait_ready(name)

    def web_start(self, name: str) -> ManagedProcess:
        process = gunicorn(self.env(), port=WEB_PORT, workers=WEB_WORKERS, threads=WEB_THREADS, log_dir=self.log_dir,
                           host=self.address(name))
        process.log_path = self.log_dir / f"web-{name}.log"
        return self._start(name, process, host=name)

    def web_wait_ready(self, name: str) -> None:
        wait_until(lambda: self.http_ok(f"http://{self.address(name)}:{WEB_PORT}/readyz"), timeout=60, what=f"{name} ready")

    def worker_start(self, name: str) -> ManagedProcess:
        worker = celery_worker(self.env(), name=f"worker-{name}", concurrency=WORKER_CONCURRENCY, log_dir=self.log_dir)
        worker.log_path = self.log_dir / f"worker-{name}-{int(time.time() * 1000)}.log"
        return self._start(name, worker, host=name)

    def worker_wait_ready(self, name: str) -> None:
        worker = self.processes[name]
        wait_until(lambda: "ready." in worker.log_path.read_text(errors="replace"), timeout=90, what=f"worker on {name} ready")

    def host_kill(self, name: str) -> int:
        """Every process of host `name` SIGKILLed at once (power lost); returns how many."""
        killed = namespace_kill(self.hosts[name].namespace)
        if name in self.processes:
            with contextlib.suppress(Exception):
                self.processes[name].process.wait(timeout=10)
        return killed

    def _start(self, name: str, process: ManagedProcess, *, host: str | None = None) -> ManagedProcess:
        """Start `process` on `host` (its command wrapped in `ip netns exec`) and keep it as `name`."""
        if host is not None:
            process.command = in_namespace(self.hosts[host], process.command)
        self.processes[name] = process.start()
        return process

    def stop(self) -> None:
        """Stop every process this stack started (the network's teardown kills what is left)."""
        for process in reversed(list(self.processes.values())):
            with contextlib.suppress(Exception):
                process.stop(timeout=10)

    # --- probes ----------------------------------------------------------------------------
    @staticmethod
    def http_ok(url: str) -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - the cluster's own hosts
            return response.status == 200

    def _database_create(self) -> bool:
        admin = f"postgres://root@{self.address('db')}:{services.POSTGRES_PORT}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=2) as connection:
            if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
                connection.execute(f'CREATE DATABASE "{DATABASE}"')
        return True

    def _pgbouncer_answers(self) -> bool:
        with psycopg.connect(self.pooled_database_url, autocommit=True, connect_timeout=2, prepare_threshold=None) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    def sandbox_ports(self) -> dict[str, int]:
        return {instance["name"]: instance["port"] for instance in self.sandbox.instances()}

    def processes_alive(self) -> dict[str, bool]:
        return {name: process.alive() for name, process in self.processes.items()}
