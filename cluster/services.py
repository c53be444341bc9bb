"""The cluster's infrastructure, each on its own host: PostgreSQL, PgBouncer, Redis, HAProxy, RabbitMQ.

Each function writes the server's configuration under the run directory and returns a
`ManagedProcess` (not started) that runs it in the foreground inside the host's namespace, so
killing the process group, or the whole namespace, stops it. PostgreSQL and PgBouncer refuse to
run as root: they run as the `postgres` user through `setpriv`, which execs (same pid).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from cluster.network import SUBNET, Host, in_namespace
from harness.processes import ManagedProcess, redis_server_binary

POSTGRES_PORT = 5432
PGBOUNCER_PORT = 6432
REDIS_PORT = 6379
HTTP_PORT = 80
AMQP_PORT = 5672
# Erlang distribution between RabbitMQ nodes (each node in its own namespace, so no clash
# with the machine's own RabbitMQ on 5672/25672/4369).
RABBITMQ_DIST_PORT = 25672
# PgBouncer's server connections per (database, user): what PostgreSQL sees from every web and
# worker thread of every host together (PostgreSQL allows POSTGRES_MAX_CONNECTIONS).
PGBOUNCER_POOL_SIZE = 20
POSTGRES_MAX_CONNECTIONS = 60


def _postgres_bin(name: str) -> str:
    for version in ("17", "16", "15"):
        candidate = Path(f"/usr/lib/postgresql/{version}/bin/{name}")
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found (apt-get install postgresql)")
    return found


def _as_postgres(command: list[str]) -> list[str]:
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", "--", *command]


def _chown_postgres(path: Path) -> None:
    user = pwd.getpwnam("postgres")
    for dirpath, _dirnames, filenames in os.walk(path):
        os.chown(dirpath, user.pw_uid, user.pw_gid)
        for filename in filenames:
            os.chown(Path(dirpath) / filename, user.pw_uid, user.pw_gid)


def postgres(host: Host, run_dir: Path, log_dir: Path) -> ManagedProcess:
    """A fresh PostgreSQL cluster (trust for the cluster's subnet only) listening on `host`.

    fsync is off: the harness never crashes this server, and a shared 2-core machine should
    not pay for durability nobody tests here.
    """
    data = run_dir / "postgres"
    data.mkdir(parents=True)
    _chown_postgres(run_dir / "postgres")
    initdb = subprocess.run(
        _as_postgres([_postgres_bin("initdb"), "-D", str(data), "-U", "root", "--auth=trust", "-E", "UTF8", "--no-sync"]),
        capture_output=True, text=True, timeout=120, check=False,
    )
    if initdb.returncode != 0:
        raise RuntimeError(f"initdb failed: {initdb.stderr}")
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {SUBNET}.0/24 trust\n")
    command = [
        _postgres_bin("postgres"), "-D", str(data), "-c", f"listen_addresses={host.address}",
        "-c", f"port={POSTGRES_PORT}", "-c", f"unix_socket_directories={data}", "-c", "fsync=off",
        "-c", "synchronous_commit=off", "-c", f"max_connections={POSTGRES_MAX_CONNECTIONS}",
        "-c", "shared_buffers=64MB",
    ]
    return ManagedProcess(f"postgres@{host.name}", in_namespace(host, _as_postgres(command)), env=dict(os.environ),
                          log_dir=log_dir)


def pgbouncer(host: Host, database_host: Host, run_dir: Path, log_dir: Path) -> ManagedProcess:
    """PgBouncer in transaction mode: every database of `database_host`, for user root."""
    directory = run_dir / "pgbouncer"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "users.txt").write_text('"root" ""\n')
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={database_host.address} port={POSTGRES_PORT}\n"
        "[pgbouncer]\n"
        f"listen_addr = {host.address}\n"
        f"listen_port = {PGBOUNCER_PORT}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {directory / 'users.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {PGBOUNCER_POOL_SIZE}\n"
        "max_client_conn = 400\n"
        # psycopg sends these at connect; PgBouncer would otherwise refuse the connection.
        "ignore_startup_parameters = extra_float_digits,options\n"
        "server_reset_query =\n"
    )
    _chown_postgres(directory)
    command = _as_postgres(["pgbouncer", str(directory / "pgbouncer.ini")])
    return ManagedProcess(f"pgbouncer@{host.name}", in_namespace(host, command), env=dict(os.environ), log_dir=log_dir)


def redis(host: Host, run_dir: Path, log_dir: Path) -> ManagedProcess:
    """Redis for breakers, rate limits and the cache, and the broker unless RabbitMQ is chosen."""
    directory = run_dir / f"redis-{host.name}"
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        redis_server_binary(), "--bind", host.address, "--port", str(REDIS_PORT), "--protected-mode", "no",
        "--save", "", "--appendonly", "no", "--dir", str(directory), "--maxmemory-policy", "noeviction",
    ]
    return ManagedProcess(f"redis@{host.name}", in_namespace(host, command), env=dict(os.environ), log_dir=log_dir)


def haproxy(host: Host, webs: list[Host], web_port: int, run_dir: Path, log_dir: Path) -> ManagedProcess:
    """HAProxy in front of the web hosts: round robin, a readiness check (the database) every second.

    A server is taken out after 2 failed checks and back in after 2 good ones. A request whose
    connection to a server fails is sent to the other one (`option redispatch`; only connection
    failures are retried, so a POST that reached a server is never sent twice by HAProxy).
    """
    servers = "\n".join(f"  server {web.name} {web.address}:{web_port} check" for web in webs)
    config = run_dir / "haproxy.cfg"
    config.write_text(
        "global\n  maxconn 2000\n"
        "defaults\n  mode http\n  timeout connect 2s\n  timeout client 35s\n  timeout server 35s\n"
        # /readyz does four round trips; a busy shared machine must not fail a healthy host.
        "  timeout check 3s\n"
        "  retries 2\n  option redispatch\n"
        f"frontend api\n  bind {host.address}:{HTTP_PORT}\n  default_backend web\n"
        "backend web\n  balance roundrobin\n"
        f"  option httpchk\n  http-check send meth GET uri /readyz?check=database ver HTTP/1.1 hdr Host {host.address}\n"
        "  default-server inter 1s fall 2 rise 2\n"
        f"{servers}\n"
    )
    command = ["haproxy", "-db", "-f", str(config)]
    return ManagedProcess(f"haproxy@{host.name}", in_namespace(host, command), env=dict(os.environ), log_dir=log_dir)
