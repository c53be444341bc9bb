"""Driving load: locust at a fixed offered rate (open loop) and hey as a closed loop for the
maximum throughput. Both record every request; only the window after the warm-up counts.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.processes import BIN, ROOT

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
# A valid checkout (checkout/tests/test_checkout_api.py's VALID): two lines, email and SMS recipients.
CHECKOUT_BODY = {
    "customer": {"name": "Ana Souza", "email": "ana@example.com", "phone": "+5511987654321", "locale": "pt-BR"},
    "lines": [
        {"sku": "TSHIRT-M", "name": "T-shirt", "quantity": 2, "unit_price": "19.90"},
        {"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": "7.50"},
    ],
    "currency": "BRL",
    "payment_token": "tok_ok",
}
CHECKOUT_PATH = "/api/v1/checkouts/"
FLOOR_PATH = "/healthz"
# Seconds one locust user waits between its requests: several times any latency we expect to
# measure at a sustainable rate, so an answer rarely delays the next request (open loop); and
# under gunicorn's 2 s keep-alive, so connections stay open.
USER_PERIOD_SECONDS = 1.5
# A locust or hey run that does not end this long after its planned time is killed.
OVERRUN_SECONDS = 90


@dataclass
class LoadResult:
    label: str
    tool: str
    offered_rps: float | None
    achieved_rps: float
    requests: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    window_start: float
    window_end: float
    statuses: dict[str, int] = field(default_factory=dict)
    # The same requests timed inside gunicorn (its access log): the checkout without the load
    # tool's own overhead, which on this box adds several milliseconds (docs/performance.md).
    server_p50_ms: float | None = None
    server_p99_ms: float | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of `values` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _summarise(label: str, tool: str, offered: float | None, rows: list[tuple[float, float, int]],
               start: float, end: float) -> LoadResult:
    """rows: (start epoch, latency ms, status) of the recorded window."""
    latencies = [row[1] for row in rows]
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[str(row[2])] = statuses.get(str(row[2]), 0) + 1
    ok = sum(count for status, count in statuses.items() if status.startswith("2"))
    return LoadResult(
        label=label, tool=tool, offered_rps=offered, achieved_rps=ok / (end - start), requests=len(rows),
        errors=len(rows) - ok, p50_ms=percentile(latencies, 50), p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99), max_ms=max(latencies, default=0.0), window_start=start, window_end=end,
        statuses=statuses,
    )


class ServerLog:
    """The lines gunicorn appends to its access log (harness ACCESS_LOG_FORMAT) during one run."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.offset = path.stat().st_size if path is not None and path.exists() else 0

    def latencies_ms(self, request_path: str, *, skip: int) -> list[float]:
        """Server-side milliseconds of the run's requests to `request_path`, without the first
        `skip` of them (the load tool's warm-up requests; the log is in the order they finished)."""
        if self.path is None or not self.path.exists():
            return []
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            lines = log.read().decode(errors="replace").splitlines()
        found = []
        for line in lines:
            parts = line.split()
            if len(parts) == 4 and parts[1] == request_path and parts[3].isdigit():
                found.append(int(parts[3]) / 1000)
        return found[skip:]

    def attach(self, result: LoadResult, request_path: str, *, skip: int) -> LoadResult:
        latencies = self.latencies_ms(request_path, skip=skip)
        if latencies:
            result.server_p50_ms = percentile(latencies, 50)
            result.server_p99_ms = percentile(latencies, 99)
        return result


def fixed_rate(*, base_url: str, path: str, rate: float, warmup: float, duration: float, label: str,
               out_dir: Path, api_key: str = "", body: dict | None = None, echo=print,
               server_log: Path | None = None) -> LoadResult:
    """Offer `rate` requests per second for warmup + duration seconds with locust; the
    requests started in the last `duration` seconds are the result."""
    users = max(4, math.ceil(rate * USER_PERIOD_SECONDS))
    raw = out_dir / f"{label}.locust.json"
    env = {
        **_clean_env(),
        "BENCH_PATH": path, "BENCH_METHOD": "POST" if body is not None else "GET",
        "BENCH_BODY": json.dumps(body) if body is not None else "", "BENCH_KEY": api_key,
        "BENCH_RATE": str(rate), "BENCH_USERS": str(users), "BENCH_OUT": str(raw), "BENCH_LABEL": label,
    }
    total = warmup + duration
    command = [
        str(BIN / "locust"), "-f", str(LOCUSTFILE), "--headless", "--users", str(users),
        "--spawn-rate", str(users), "--run-time", f"{math.ceil(total)}s", "--host", base_url,
        "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "30", "--exit-code-on-error", "0",
    ]
    started = time.time()
    server = ServerLog(server_log)
    _run_streaming(command, env=env, log=out_dir / f"{label}.locust.log", timeout=total + OVERRUN_SECONDS, echo=echo)
    samples = json.loads(raw.read_text())["samples"]
    window_start = started + warmup
    window_end = min(started + total, max((s[0] for s in samples), default=started + total))
    rows = [tuple(s) for s in samples if window_start <= s[0] < window_end]
    result = _summarise(label, "locust", rate, rows, window_start, window_end)
    return server.attach(result, path, skip=sum(1 for sample in samples if sample[0] < window_start))


def closed_loop(*, base_url: str, path: str, concurrency: int, warmup: float, duration: float, label: str,
                out_dir: Path, api_key: str = "", body: dict | None = None, echo=print,
                server_log: Path | None = None) -> LoadResult:
    """Maximum throughput: hey with `concurrency` connections, each sending as soon as the last
    answer arrived (closed loop); the requests started after the warm-up are the result."""
    hey = shutil.which("hey")
    if hey is None:
        raise RuntimeError("hey is missing: apt-get install hey (Debian package)")
    command = [hey, "-z", f"{warmup + duration:g}s", "-c", str(concurrency), "-o", "csv", "-t", "30"]
    if api_key:
        command += ["-H", f"Authorization: Bearer {api_key}"]
    if body is not None:
        body_file = out_dir / "checkout-body.json"
        body_file.write_text(json.dumps(body))
        command += ["-m", "POST", "-T", "application/json", "-D", str(body_file)]
    command.append(base_url + path)
    echo(f"[load] {label}: hey closed loop, {concurrency} connections, {warmup:g}s warm-up + {duration:g}s")
    started = time.time()
    server = ServerLog(server_log)
    result = subprocess.run(command, capture_output=True, text=True, timeout=warmup + duration + OVERRUN_SECONDS,
                            check=True)
    (out_dir / f"{label}.hey.csv").write_text(result.stdout)
    rows = []
    warming = 0
    for record in csv.DictReader(io.StringIO(result.stdout)):
        offset = float(record["offset"])
        warming += offset < warmup
        if warmup <= offset < warmup + duration:
            rows.append((started + offset, float(record["response-time"]) * 1000, int(record["status-code"])))
    summary = server.attach(_summarise(label, "hey", None, rows, started + warmup, started + warmup + duration), path,
                            skip=warming)
    echo(f"[load] {label}: {summary.achieved_rps:.0f} req/s, p50 {summary.p50_ms:.1f} ms, p99 {summary.p99_ms:.1f} ms")
    return summary


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}


def _run_streaming(command: list[str], *, env: dict[str, str], log: Path, timeout: float, echo) -> None:
    """Run, echoing the progress lines ("[load] ...") and keeping everything in `log`."""
    deadline = time.monotonic() + timeout
    with open(log, "w") as log_file:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            log_file.write(line)
            if line.startswith("[load]"):
                echo(line.rstrip())
            if time.monotonic() > deadline:
                proc.kill()
                break
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.returncode not in (0, None):
        sys.stderr.write(log.read_text()[-2000:])
        raise RuntimeError(f"{command[0]} exited with {proc.returncode}; see {log}")
