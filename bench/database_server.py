"""The PostgreSQL server the benchmark measures on, and the connections its processes hold.

Every thread that touches the database keeps a connection (Django's persistent connections,
Celery's threads pool). In the side-by-side scenarios three webs, Beacon's workers and the
peer's workers run at once and need more than a stock server's 100 connections: PostgreSQL
then refuses some of them ("too many clients"), which voided two runs' delivery comparison.

So by default the benchmark runs on a server of its own: a fresh cluster of the embedded
PostgreSQL binaries (scripts/devservices.py), on a spare loopback port, **durable** (every
commit flushed to disk, as on a production server) and with room for every process it starts.
`--database-url` runs it on another server instead, after checking that server has the room.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench.floor import FLOOR_DATABASE_HOSTS, FLOOR_DATABASE_ROLE
from bench.stack import WEB_THREADS, WEB_WORKERS, WORKER_DISPATCH_THREADS, WORKER_THREADS
from harness.database import database_connect
from harness.processes import free_port
from scripts.devservices import Postgres, ServiceError, pid_alive

# One Beacon threads worker process: its Celery threads, its listener's dispatch threads and the
# listener's own session.
BEACON_WORKER_CONNECTIONS = WORKER_THREADS + WORKER_DISPATCH_THREADS + 1
WEB_CONNECTIONS = WEB_WORKERS * WEB_THREADS
# Celery beat, and this process (the ORM and the short sessions that count and check).
BEAT_CONNECTIONS = 1
RUNNER_CONNECTIONS = 4
# The largest layout of Beacon's workers: scenario 4's four threads worker processes, which the
# side by side also runs when scenario 4 found them clearly better (bench/scenarios.py); the
# peer then gets as many.
MOST_WORKER_PROCESSES = 4
PEER_WORKER_CONNECTIONS = WORKER_THREADS + WORKER_DISPATCH_THREADS  # the peer's workers have Beacon's shape
SIDE_BY_SIDE_SCENARIOS = frozenset({"compare", "faults"})
# Sessions that are closing while their replacements open: the peer's Celery threads connect
# for each task and close after it (Celery's Django fix-up), a killed worker's sessions end late.
CLOSING_SLACK = 10
# How long the server may take to end after each signal, when its fast shutdown failed.
STOP_WAIT_SECONDS = 10.0

PRIVATE_SERVER_CONF = """\
# Written by bench/database_server.py: the benchmark's own server, deleted after the run.
listen_addresses = '{host}'
port = {port}
unix_socket_directories = ''
max_connections = %(max_connections)d
shared_buffers = 128MB
timezone = 'UTC'
log_timezone = 'UTC'
# Durable, as a production server: a commit waits for its flush to disk.
fsync = on
full_page_writes = on
synchronous_commit = on
"""


def connections_needed(scenarios: set[str]) -> int:
    """The most connections the benchmark's processes may hold at once for these scenarios."""
    beacon_alone = (WEB_CONNECTIONS + MOST_WORKER_PROCESSES * BEACON_WORKER_CONNECTIONS
                    + BEAT_CONNECTIONS + RUNNER_CONNECTIONS + CLOSING_SLACK)
    if not scenarios & SIDE_BY_SIDE_SCENARIOS:
        return beacon_alone
    # Three webs; each system's workers, plus one more of each while the fault scenario replaces a
    # killed worker (the dead one's sessions end while its replacement opens its own).
    side_by_side = (3 * WEB_CONNECTIONS
                    + (MOST_WORKER_PROCESSES + 1) * (BEACON_WORKER_CONNECTIONS + PEER_WORKER_CONNECTIONS)
                    + BEAT_CONNECTIONS + RUNNER_CONNECTIONS + CLOSING_SLACK)
    return max(beacon_alone, side_by_side)


@dataclass(frozen=True)
class ServerRoom:
    max_connections: int
    reserved: int  # superuser_reserved_connections and reserved_connections, unless the role is a superuser
    in_use: int  # sessions already open on the server, by anyone

    @property
    def free(self) -> int:
        return self.max_connections - self.reserved - self.in_use


def server_room(server_url: str) -> ServerRoom:
    with database_connect(server_url) as conn:
        max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
        superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        # reserved_connections is PostgreSQL 16's (NULL before it).
        reserved = 0 if superuser and superuser[0] else sum(int(conn.execute(
            "SELECT coalesce(current_setting(%s, true), '0')", [name]).fetchone()[0])
            for name in ("superuser_reserved_connections", "reserved_connections"))
        in_use = int(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").fetchone()[0])
    # This check's own session is counted in use and closes now.
    return ServerRoom(max_connections, reserved, in_use - 1)


def server_room_check(server_url: str, scenarios: set[str]) -> ServerRoom:
    """Raise ValueError, before anything starts, when the server cannot give the benchmark's
    processes the connections these scenarios need, cannot be reached, or (for the side by side)
    is not one the floor can use: limitapp.py connects to 127.0.0.1 as root."""
    try:
        room = server_room(server_url)
        if scenarios & SIDE_BY_SIDE_SCENARIOS:
            parts = urlsplit(server_url)
            if parts.hostname not in FLOOR_DATABASE_HOSTS:
                raise ValueError(f"the floor (limitapp.py) connects to 127.0.0.1 only, and the server is "
                                 f"{parts.hostname}: run the side by side on this machine's server")
            as_floor = parts._replace(netloc=f"{FLOOR_DATABASE_ROLE}@{parts.hostname}:{parts.port or 5432}")
            database_connect(urlunsplit(as_floor)).close()
    except psycopg.Error as exc:
        raise ValueError(f"the PostgreSQL server cannot be used: {exc}".strip()) from exc
    needed = connections_needed(scenarios)
    if room.free < needed:
        raise ValueError(
            f"the PostgreSQL server has room for {room.free} more connections (max_connections "
            f"{room.max_connections}, {room.reserved} reserved, {room.in_use} in use) and these scenarios may need "
            f"{needed}: PostgreSQL would refuse some, and the comparison would measure the refusals. "
            "Raise max_connections, or leave out --database-url to run on the benchmark's own server."
        )
    return room


class PrivateServer:
    """A fresh, durable PostgreSQL cluster in `directory`, deleted by `stop()`."""

    def __init__(self, directory: Path, *, log: Path, max_connections: int) -> None:
        self.directory = directory
        self.max_connections = max_connections
        conf = PRIVATE_SERVER_CONF % {"max_connections": max_connections}
        self.server = Postgres(pgdata=directory / "pgdata", log=log, port=free_port(), conf=conf)

    @property
    def url(self) -> str:
        return self.server.url_for_running()

    def start(self) -> str:
        """Start it; returns its URL. Raises RuntimeError with the server's log when it cannot."""
        try:
            self.server.up()
        except ServiceError as exc:
            self.stop()
            raise RuntimeError(f"the benchmark's PostgreSQL server did not start: {exc}") from exc
        try:
            with database_connect(self.url) as conn:
                conn.execute(f"CREATE ROLE {FLOOR_DATABASE_ROLE} SUPERUSER LOGIN")  # a constant of bench.floor
        except psycopg.Error as exc:
            self.stop()
            raise RuntimeError(f"the benchmark's PostgreSQL server could not create the floor's role: {exc}") from exc
        return self.url

    def stop(self) -> None:
        """Stop the server (fast shutdown; an immediate one if that fails) and delete its data.
        Never leaves a server running on a deleted folder."""
        running = self.server.running()
        try:
            if running:
                self.server.down()
        except ServiceError:
            _postmaster_end(running[0])
        finally:
            if self.server.running() is None:
                shutil.rmtree(self.directory, ignore_errors=True)


def _postmaster_end(pid: int) -> None:
    """Immediate shutdown (SIGQUIT), then SIGKILL if it is still there after STOP_WAIT_SECONDS."""
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while time.monotonic() < deadline:
            if not pid_alive(pid, "postgres"):
                return
            time.sleep(0.1)
