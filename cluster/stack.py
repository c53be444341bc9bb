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
The stack is a `harness.stack.Stack` whose processes are placed on hosts (`command_placed`), so
the chaos suite's load, inbox counting and scenario runner (chaos/load.py, chaos/scenarios/common.py,
chaos/runner.py) work unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
from pathlib import Path

from chaos.stack import STACK_SETTINGS
from cluster import services
from cluster.network import SUBNET, Host, in_namespace, namespace_kill
from cluster.rabbitmq import RabbitCluster, broker_url
from harness.database import database_connect, database_recreate
from harness.processes import ManagedProcess, wait_until
from harness.stack import Stack, StackOptions

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


# The host of each Beacon process the harness starts (cluster/services.py places the infrastructure itself).
PROCESS_HOSTS = {"sandbox": "vendors", "web": "lb", "web1": "web1", "web2": "web2", "beat": "beat",
                 **{name: name for name in WORKER_HOSTS}}


def _redis_url(db: int) -> str:
    return f"redis://{HOSTS['redis'].address}:{services.REDIS_PORT}/{db}"


class ClusterStack(Stack):
    def __init__(self, *, log_dir: Path, run_dir: Path, worker_hosts: int = 2) -> None:
        self.hosts = HOSTS
        allowed = ",".join(HOSTS[name].address for name in ("lb", "web1", "web2"))
        super().__init__(StackOptions(
            log_dir=log_dir,
            database_url=f"postgres://root@{HOSTS['pgbouncer'].address}:{services.PGBOUNCER_PORT}/{DATABASE}",
            redis_url=_redis_url(0),
            broker_url=_redis_url(2),
            settings={
                "SECRET_KEY": "cluster-" + secrets.token_urlsafe(48),
                "CACHE_KEY_PREFIX": "beacon-cluster", "WORKER_METRICS_PORT": "0", **STACK_SETTINGS,
                # Transaction pooling: no prepared statements (PgBouncer 1.18 cannot keep them).
                "DATABASE_SERVER_SIDE_BINDING": "false", "ALLOWED_HOSTS": allowed,
                # The sandbox vendors live on the cluster's private subnet and speak plain http.
                "VENDOR_EGRESS_ALLOWED_NETWORKS": f"{SUBNET}.0/24", "VENDOR_EGRESS_ALLOW_HTTP": "true",
            },
            sandbox_port=SANDBOX_BASE_PORT,
            web_port=WEB_PORT,
            web_workers=WEB_WORKERS,
            web_threads=WEB_THREADS,
            worker_concurrency=WORKER_CONCURRENCY,
        ))
        self.run_dir = run_dir
        self.worker_hosts = list(WORKER_HOSTS[:worker_hosts])
        self.rabbit = RabbitCluster([self.hosts[name] for name in RABBITMQ_HOSTS], run_dir, log_dir)

    # --- addresses and environment ---------------------------------------------------------
    def address(self, host: str) -> str:
        return self.hosts[host].address

    def address_of(self, name: str) -> str:
        """The address of the host the process `name` runs on."""
        return self.address(PROCESS_HOSTS[name])

    def command_placed(self, name: str, command: list[str]) -> list[str]:
        """`command` inside the namespace of the host of `name` (the infrastructure places itself)."""
        return in_namespace(self.hosts[PROCESS_HOSTS[name]], command) if name in PROCESS_HOSTS else command

    @property
    def base_url(self) -> str:
        return f"http://{self.address('lb')}:{services.HTTP_PORT}"

    @property
    def direct_database_url(self) -> str:
        return f"postgres://root@{self.address('db')}:{services.POSTGRES_PORT}/{DATABASE}"

    @property
    def pooled_database_url(self) -> str:
        return self.database_url

    def env(self, *, direct: bool = False, via_proxy: bool = False, **extra: str) -> dict[str, str]:
        """A Beacon process's environment: PostgreSQL through PgBouncer, or `direct`ly."""
        environment = super().env(**extra)
        # The workers' trigger listener needs a session of its own: LISTEN does not work
        # through PgBouncer in transaction mode (docs/reliability.md, "The hand-off").
        environment["TRIGGER_LISTENER_DATABASE_URL"] = self.direct_database_url
        if direct:
            environment["DATABASE_URL"] = self.direct_database_url
        return environment

    def runner_environ(self) -> None:
        """Make this process a Beacon process of the cluster (before django.setup()), reading PostgreSQL directly."""
        os.environ.update(self.env(direct=True))

    # --- lifecycle -------------------------------------------------------------------------
    def start_services(self) -> None:
        """PostgreSQL (with the database), PgBouncer, Redis and the sandbox vendors, each on its host."""
        self.process_start("db", services.postgres(self.hosts["db"], self.run_dir, self.log_dir))
        wait_until(self._database_create, timeout=60, interval=0.5, what="PostgreSQL on db")
        self.process_start("pgbouncer", services.pgbouncer(self.hosts["pgbouncer"], self.hosts["db"], self.run_dir,
                                                           self.log_dir))
        self.process_start("redis", services.redis(self.hosts["redis"], self.run_dir, self.log_dir))
        self.sandbox_start()
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
        self.options = dataclasses.replace(self.options, broker_url=url)
        for name in ("web1", "web2", *self.worker_hosts, "beat"):
            self.processes[name].stop(timeout=20)
        for name in ("web1", "web2"):
            self.web_start(name, wait=False)
        for name in self.worker_hosts:
            self.worker_start(name)
        self.beat_start()
        for name in ("web1", "web2"):
            self.web_wait_ready(name)
        for name in self.worker_hosts:
            self.worker_wait_ready(name)

    @property
    def rabbitmq_url(self) -> str:
        return broker_url([self.hosts[name] for name in RABBITMQ_HOSTS])

    def migrate(self) -> None:
        """The release job: migrations straight to PostgreSQL (never through a transaction pooler)."""
        self.manage("migrate", "--noinput", "-v", "0", env=self.env(direct=True))

    def start_processes(self) -> None:
        for web in ("web1", "web2"):
            self.web_start(web, wait=False)
        self.process_start("lb", services.haproxy(self.hosts["lb"], [self.hosts["web1"], self.hosts["web2"]], WEB_PORT,
                                                  self.run_dir, self.log_dir))
        for name in self.worker_hosts:
            self.worker_start(name)
        self.beat_start()
        wait_until(lambda: self.http_ok(f"{self.base_url}/readyz"), timeout=60, what="HAProxy to a ready web")
        for name in self.worker_hosts:
            self.worker_wait_ready(name)

    def worker_start(self, name: str = "worker", **options: object) -> ManagedProcess:
        """The worker of host `name`: its Celery node and log are `worker-<host>-…` (the scenarios find them so)."""
        return super().worker_start(name, node=f"worker-{name}", **options)

    def host_kill(self, name: str) -> int:
        """Every process of host `name` SIGKILLed at once (power lost); returns how many."""
        killed = namespace_kill(self.hosts[name].namespace)
        if name in self.processes:
            with contextlib.suppress(Exception):
                self.processes[name].process.wait(timeout=10)
        return killed

    # --- probes ----------------------------------------------------------------------------
    def _database_create(self) -> bool:
        database_recreate(self.direct_database_url)
        return True

    def _pgbouncer_answers(self) -> bool:
        with database_connect(self.pooled_database_url) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
