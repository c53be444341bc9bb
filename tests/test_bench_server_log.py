"""The benchmark's server-side latency: read from gunicorn's access log, this run's lines only."""

from __future__ import annotations

from pathlib import Path

from bench.load import LoadResult, ServerLog


def _result() -> LoadResult:
    return LoadResult(label="x", tool="locust", offered_rps=1, achieved_rps=1, requests=1, errors=0, p50_ms=1,
                      p95_ms=1, p99_ms=1, max_ms=1, window_start=0, window_end=1)


def test_it_reads_only_the_lines_written_during_the_run_for_the_path(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("POST /api/v1/checkouts/ 201 999000\n")  # an earlier run
    server = ServerLog(log)
    with log.open("a") as handle:
        handle.write("GET /healthz 200 1500\n")
        for micros in (4000, 8000, 12000, 16000):
            handle.write(f"POST /api/v1/checkouts/ 201 {micros}\n")
        handle.write("garbage line\n")

    assert server.latencies_ms("/api/v1/checkouts/", skip=0) == [4.0, 8.0, 12.0, 16.0]
    assert server.latencies_ms("/api/v1/checkouts/", skip=3) == [16.0]  # the warm-up's requests dropped
    result = server.attach(_result(), "/healthz", skip=0)
    assert (result.server_p50_ms, result.server_p99_ms) == (1.5, 1.5)


def test_without_a_log_the_result_has_no_server_numbers(tmp_path: Path) -> None:
    result = ServerLog(tmp_path / "missing.log").attach(_result(), "/healthz", skip=0)
    assert result.server_p50_ms is None and result.server_p99_ms is None
