"""The benchmark's PostgreSQL server: its own is durable and has a connection for every thread
the benchmark starts, and another server without that room is refused before anything starts
(two runs' delivery comparisons were void: a stock server refused the peer's workers 22,494
connections)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.request

import psycopg
import pytest

from bench.database_server import PrivateServer, connections_needed, server_room, server_room_check
from bench.floor import CHECKOUT_BODY, CHECKOUT_PATH, FLOOR_DATABASE_ROLE, FloorApp
from harness.database import database_connect
from harness.processes import ROOT, free_port
from scripts.devservices import ServiceError, pid_alive

SIDE_BY_SIDE = {"floor", "compare", "faults"}
BEACON_ALONE = {"floor", "daily"}


@pytest.fixture
def private_server(tmp_path):
    """A server of the benchmark's kind with room for the Beacon-only scenarios, not the side by side."""
    server = PrivateServer(tmp_path / "database", log=tmp_path / "postgres.log",
                           max_connections=connections_needed(BEACON_ALONE))
    server.start()
    yield server
    server.stop()


def _show(url: str, name: str) -> str:
    with database_connect(url) as conn:
        return conn.execute(f"SHOW {name}").fetchone()[0]


def test_its_own_server_is_durable_and_gives_every_thread_a_connection(tmp_path) -> None:
    needed = connections_needed(SIDE_BY_SIDE)
    server = PrivateServer(tmp_path / "database", log=tmp_path / "postgres.log", max_connections=needed)
    url = server.start()
    try:
        for name in ("fsync", "full_page_writes", "synchronous_commit"):
            assert _show(url, name) == "on", name
        assert connections_needed(SIDE_BY_SIDE) > 100  # a stock server's whole max_connections
        with contextlib.ExitStack() as sessions:
            held = [sessions.enter_context(database_connect(url)) for _ in range(needed)]
            held.pop().close()  # room for the check's own session
            assert server_room(url).free == 1
    finally:
        server.stop()

    assert not (tmp_path / "database").exists()
    with pytest.raises(psycopg.OperationalError):
        database_connect(url)


def test_a_server_without_room_for_the_side_by_side_is_refused_with_the_numbers(private_server) -> None:
    assert server_room_check(private_server.url, BEACON_ALONE).free == connections_needed(BEACON_ALONE)

    with pytest.raises(ValueError) as refused:
        server_room_check(private_server.url, SIDE_BY_SIDE)

    message = str(refused.value)
    assert f"may need {connections_needed(SIDE_BY_SIDE)}" in message
    assert f"max_connections {connections_needed(BEACON_ALONE)}" in message


def test_a_server_the_floor_cannot_log_in_to_is_refused_for_the_side_by_side(private_server) -> None:
    with database_connect(private_server.url) as conn:
        conn.execute(f"DROP ROLE {FLOOR_DATABASE_ROLE}")

    assert server_room_check(private_server.url, BEACON_ALONE)  # Beacon alone does not need the floor's role
    with pytest.raises(ValueError, match=f'role "{FLOOR_DATABASE_ROLE}" does not exist'):
        server_room_check(private_server.url, {"compare"})


def test_a_server_that_does_not_answer_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cannot be used"):
        server_room_check(f"postgres://root@127.0.0.1:{free_port()}/postgres", BEACON_ALONE)


def test_the_floor_runs_on_the_benchmarks_own_server(private_server, tmp_path) -> None:
    floor = FloorApp(server_url=private_server.url, database="bench_floor_test", log_dir=tmp_path,
                     workers=1, threads=2)
    floor.start()
    try:
        request = urllib.request.Request(floor.base_url + CHECKOUT_PATH, data=json.dumps(CHECKOUT_BODY).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 201
    finally:
        floor.stop()

    floor_database = private_server.url.rsplit("/", 1)[0] + "/bench_floor_test"
    with database_connect(floor_database) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1


def test_a_server_whose_fast_shutdown_fails_is_ended_before_its_data_is_deleted(tmp_path, monkeypatch) -> None:
    server = PrivateServer(tmp_path / "database", log=tmp_path / "postgres.log", max_connections=20)
    server.start()
    pid = server.server.running()[0]

    def stop_fails() -> str:
        raise ServiceError("pg_ctl failed: (simulated)")

    monkeypatch.setattr(server.server, "down", stop_fails)
    server.stop()

    assert not pid_alive(pid, "postgres")
    assert not (tmp_path / "database").exists()


def test_sessions_already_open_count_against_the_room(private_server) -> None:
    with database_connect(private_server.url), database_connect(private_server.url):
        room = server_room(private_server.url)

    assert room.in_use == 2
    assert room.free == connections_needed(BEACON_ALONE) - 2


def test_the_benchmark_stops_before_starting_anything_on_a_server_without_room(private_server) -> None:
    results = ROOT / "bench" / "results"
    before = set(results.iterdir()) if results.exists() else set()

    run = subprocess.run([sys.executable, "-m", "bench.run", "--database-url", private_server.url, "--only", "compare"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert run.returncode == 2
    assert f"may need {connections_needed({'compare'})}" in run.stderr
    assert (set(results.iterdir()) if results.exists() else set()) == before
