"""The summary of a partial run (`bench.run --only ...`) says what ran and shows no empty tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.report import summary_markdown

ROOT = Path(__file__).resolve().parents[1]

DAILY_ONLY = {
    "started": "20261203-081302",
    "profile": "full",
    "only": ["daily"],
    "machine": "2 vCPU",
    "stack": {"web": "gunicorn"},
    "daily_volume": {
        "ladder": [
            {"rate": 108, "delivered_per_s": 214.3, "delivery_p99_ms": 899, "max_queue_depth": 78, "sustained": True,
             "lost": 0},
            {"rate": 116, "delivered_per_s": 217.2, "delivery_p99_ms": 4424, "max_queue_depth": 489, "sustained": False,
             "lost": 0},
        ],
        "target_rps": 116,
        "sustained_rps": 108,
        "per_day": 108 * 86400,
        "fraction_of_case_study": 0.933,
        "burst_rate": 216,
        "burst": {"drain_after_load_s": 55.0, "lost": 0, "checkout": {"achieved_rps": 215.0}},
        "burst_drained_within_60s": True,
    },
}


def test_a_daily_only_run_is_titled_as_such_and_has_no_empty_latency_table() -> None:
    summary = summary_markdown(DAILY_ONLY)

    assert summary.splitlines()[0] == "# Beacon benchmark — 20261203-081302 (full, only daily)"
    assert "## Latency and throughput" not in summary
    assert "- 116/s: delivered 217.2/s, delivery p99 4424 ms, max queue 489, not sustained" in summary
    assert "Sustained: 108 checkouts/s = 9.33 million/day" in summary
    assert "Plots: none" in summary


def test_an_unknown_scenario_name_is_refused_before_anything_starts() -> None:
    result = subprocess.run([sys.executable, "-m", "bench.run", "--only", "daily,dayly"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 2
    assert "--only: unknown scenario dayly; choose from floor,sync,pipeline,daily,outage,compare,faults" in result.stderr


def test_a_run_whose_processes_postgresql_refused_says_so_above_its_numbers(tmp_path: Path) -> None:
    from bench.report import connection_refusals

    refused = ('{"level": "ERROR", "message": "OperationalError(\'connection failed: connection to server at '
               '\\"127.0.0.1\\", port 5432 failed: FATAL:  sorry, too many clients already\')"}\n')
    (tmp_path / "peer-worker-1.log").write_text("started\n" + refused * 3)
    (tmp_path / "worker-threads-0.log").write_text(refused)
    (tmp_path / "web.log").write_text("started\nGET /healthz 200\n")

    refusals = connection_refusals(tmp_path)
    summary = summary_markdown({**DAILY_ONLY, "connection_refusals": refusals})

    assert refusals == {"peer-worker-1.log": 3, "worker-threads-0.log": 1}
    warning = next(line for line in summary.splitlines() if line.startswith("**PostgreSQL refused connections**"))
    assert "4 times: peer-worker-1.log 3, worker-threads-0.log 1" in warning
    assert summary.index(warning) < summary.index("## Targets")


def test_a_run_postgresql_never_refused_has_no_warning(tmp_path: Path) -> None:
    from bench.report import connection_refusals

    (tmp_path / "web.log").write_text("started\n")

    assert connection_refusals(tmp_path) == {}
    assert "refused connections" not in summary_markdown({**DAILY_ONLY, "connection_refusals": {}})
