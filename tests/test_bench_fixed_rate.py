"""The benchmark's fixed-rate load (locust): requests arrive evenly spaced, not in bursts.

A real locust run against a small HTTP server on loopback. Bursts here would inflate every
fixed-rate p99 the benchmark reports (requests queueing behind each other in the server).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.load import fixed_rate

RATE = 20.0  # requests per second: one every 50 ms


@pytest.fixture
def arrivals() -> Iterator[tuple[str, list[float]]]:
    seen: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_fixed_rate_spreads_requests_evenly_over_each_period(arrivals, tmp_path: Path) -> None:
    url, seen = arrivals

    result = fixed_rate(base_url=url, path="/healthz", rate=RATE, warmup=1, duration=3, label="spacing",
                        out_dir=tmp_path, echo=lambda line: None)

    assert result.errors == 0
    assert result.achieved_rps == pytest.approx(RATE, rel=0.2)
    steady = [t for t in seen if t - seen[0] >= 1.0]  # past the first period, every user has its phase
    gaps = [later - earlier for earlier, later in itertools.pairwise(steady)]
    # Evenly spaced: 50 ms apart. A burst puts several requests within a millisecond or two.
    close_pairs = sum(1 for gap in gaps if gap < 0.2 / RATE)
    assert len(gaps) >= 40
    assert close_pairs <= len(gaps) // 10, sorted(gaps)[:10]
