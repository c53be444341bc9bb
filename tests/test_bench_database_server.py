"""The benchmark's PostgreSQL server: its own is durable and has a connection for every thread
the benchmark starts, and another server without that room is refused before anything starts
(two runs' delivery comparisons were void: a stock server refused the peer's workers 22,494
connections)."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import psycopg
import pytest

from bench.database_server import PrivateServer, connections_needed, server_room, server_room_check
from harness.database import database_connect
from harness.processes import ROOT

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


def test_the_side_by_side_needs_more_than_a_stock_servers_connections() -> None:
    assert connections_needed(SIDE_BY_SIDE) > 100
    assert connections_needed(BEACON_ALONE) < connections_needed(SIDE_BY_SIDE)


def test_its_own_server_is_durable_and_gives_every_thread_a_connection(tmp_path) -> None:
    needed = connections_needed(SIDE_BY_SIDE)
    server = PrivateServer(tmp_path / "database", log=tmp_path / "postgres.log", max_connections=needed)
    url = server.start()
    try:
        for name in ("fsync", "full_page_writes", "synchronous_commit"):
            assert _show(url, name) == "on", name
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
