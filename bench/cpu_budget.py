"""Where the CPU goes: milliseconds of CPU per checkout, by process type, at a fixed rate.

    python -m bench.cpu_budget [--rate 40] [--seconds 20] [--workers 2] [--py-spy]

Starts the benchmark's stack (bench/stack.py), offers `rate` checkouts per second with hey
(`-q`), waits until every notification is sent, and divides the CPU time each process type used
(from /proc, the whole run including the drain) by the number of checkouts. `--py-spy` also
records py-spy samples (raw format) of one worker, every web process and the sandbox into the
results folder.

Beside the CPU it counts the work each checkout caused, which noisy neighbours cannot move:
PostgreSQL transactions committed in the bench database (each statement outside a transaction
block is one; read after the idle backends' statistics flush, about 10 s) and Redis commands
processed (broker, cache, breakers; the commands the breaker's scripts run count one each, and
idle workers' polling is included), per checkout.

The CPU is the measurement; the latency line is not comparable with the bench's: hey's
connections start together, so `-c N -q R` offers a burst of N requests every 1/R seconds, and
each waits behind the others (bench/load.py uses locust with evenly spaced requests).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import psutil
import redis

from bench import load, scenarios
from bench.stack import BenchStack, stop_on_sigterm
from harness.database import database_connect

RESULTS = Path(__file__).resolve().parent / "results"
# hey connections for the fixed rate: each sends rate / CONNECTIONS requests per second.
CONNECTIONS = 8


def cpu_seconds(proc: psutil.Process) -> float | None:
    """User and system CPU seconds of `proc`; None once it has exited."""
    try:
        times = proc.cpu_times()
        return times.user + times.system
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def processes_by_type(stack: BenchStack) -> dict[str, list[psutil.Process]]:
    groups: dict[str, list[psutil.Process]] = {
        "web (gunicorn)": _tree(stack.web.pid),
        "workers (celery)": [p for worker in stack.workers for p in _tree(worker.pid)],
        "beat": _tree(stack.processes["beat"].pid),
        "sandbox vendors": _tree(stack.processes["sandbox"].pid),
        "redis": _tree(stack.redis.proc.pid),
        "postgresql": [p for p in psutil.process_iter(["name"]) if p.info["name"] and p.info["name"].startswith("postgres")],
    }
    return groups


# PostgreSQL backends flush their statistics at least this often while idle (PGSTAT_IDLE_INTERVAL, 10 s).
STATS_FLUSH_SECONDS = 11


def work_counts(stack: BenchStack) -> dict[str, int]:
    """PostgreSQL transactions committed in the bench database, and Redis commands processed."""
    with database_connect(stack.database_url) as conn:
        commits = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]
    client = redis.Redis.from_url(stack.redis.url(0))
    counts = {"postgresql_transactions": int(commits), "redis_commands": int(client.info("stats")["total_commands_processed"])}
    for name, stats in client.info("commandstats").items():
        counts[f"redis {name.removeprefix('cmdstat_')}"] = int(stats["calls"])
    return counts


def snapshot(groups: dict[str, list[psutil.Process]]) -> dict[str, dict[int, float]]:
    """CPU seconds by process type and pid, of the processes alive now. A process that exits
    between two snapshots takes its CPU since the first with it (PostgreSQL backends of closed
    connections): the figure is then a little low, never negative as a process read as zero
    made it."""
    seconds = {name: {p.pid: cpu_seconds(p) for p in procs} for name, procs in groups.items()}
    return {name: {pid: used for pid, used in by_pid.items() if used is not None} for name, by_pid in seconds.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=40.0, help="checkouts per second offered")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2, help="threaded Celery worker processes")
    parser.add_argument("--vendor-ms", type=float, default=scenarios.VENDOR_LATENCY_FAST_MS)
    parser.add_argument("--py-spy", action="store_true", help="record py-spy samples of a worker, a web process and the sandbox")
    parser.add_argument("--wall-clock", action="store_true",
                        help="with --py-spy: sample every thread, waiting ones too (where the time goes, not the CPU)")
    args = parser.parse_args()
    out = RESULTS / f"{datetime.now():%Y%m%d-%H%M%S}-cpu"
    (out / "logs").mkdir(parents=True)
    stop_on_sigterm()
    stack = BenchStack(server_url=os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/beacon"), log_dir=out / "logs")
    try:
        stack.start(progress=print)
        stack.workers_start("threads", args.workers)
        scenarios.sandbox_fresh(stack, args.vendor_ms)
        # Warm every process (connections, caches, compiled templates) before counting.
        warm_since = time.time()
        load.closed_loop(base_url=stack.base_url, path=load.CHECKOUT_PATH, concurrency=4, warmup=0, duration=3,
                         label="cpu-warmup", out_dir=out, api_key=stack.api_key, body=load.CHECKOUT_BODY)
        scenarios.deliveries_settle(stack, since=warm_since, timeout=120, echo=print)
        groups = processes_by_type(stack)
        spies = []
        if args.py_spy:
            spy = shutil.which("py-spy") or str(Path(os.sys.executable).parent / "py-spy")
            # The web: gunicorn's master and all its workers (--subprocesses), since the kernel
            # may hand every load connection to one worker and leave the others idle.
            for name, pid, extra in (("worker", stack.workers[0].pid, []), ("web", stack.web.pid, ["--subprocesses"]),
                                     ("sandbox", stack.processes["sandbox"].pid, [])):
                spies.append(subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(args.seconds)), "-r", "100", *(["--idle"] if args.wall_clock else ["--gil"]),
                                               *extra, "-o", str(out / f"py-spy-{name}.txt"), "--format", "raw", "--nonblocking"],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(STATS_FLUSH_SECONDS)  # the warm-up's statistics flushed before they are counted
        work_before = work_counts(stack)
        before = snapshot(groups)
        since = time.time()
        started = time.monotonic()
        per_connection = args.rate / CONNECTIONS
        body = out / "body.json"
        body.write_text(json.dumps(load.CHECKOUT_BODY))
        hey = subprocess.run(
            ["hey", "-z", f"{args.seconds:g}s", "-c", str(CONNECTIONS), "-q", f"{per_connection:g}", "-m", "POST",
             "-T", "application/json", "-D", str(body), "-H", f"Authorization: Bearer {stack.api_key}",
             stack.base_url + load.CHECKOUT_PATH],
            capture_output=True, text=True, timeout=args.seconds + 60, check=True,
        )
        load_seconds = time.monotonic() - started
        check = scenarios.deliveries_settle(stack, since=since, timeout=300, echo=print)
        elapsed = time.monotonic() - started
        after = snapshot(processes_by_type(stack))  # processes started during the run count from zero
        for spy in spies:
            spy.wait(timeout=60)
        time.sleep(STATS_FLUSH_SECONDS)
        work_after = work_counts(stack)
        checkouts = check["checkouts"] or 1
        work = {name: (work_after[name] - work_before.get(name, 0)) / checkouts for name in work_after}
        totals = {name: per for name, per in work.items() if not name.startswith("redis ")}
        rows = []
        total = 0.0
        for name in groups:
            used = sum(after[name].get(pid, 0.0) - before[name].get(pid, 0.0) for pid in after[name])
            total += used
            rows.append((name, used * 1000 / checkouts, used / elapsed))
        summary = [line for line in hey.stdout.splitlines() if "Requests/sec" in line or "Average" in line
                   or "50%" in line or "99%" in line]
        print(f"\n{checkouts} checkouts at {args.rate:g}/s offered for {load_seconds:.0f}s, drained after "
              f"{elapsed - load_seconds:.1f}s, lost {check['lost']}, delivery p50/p99 "
              f"{check['delivery_p50_ms']:.0f}/{check['delivery_p99_ms']:.0f} ms")
        print("hey (bursty, see the module's docstring): " + " | ".join(s.strip() for s in summary))
        print(f"{'process type':<20} {'CPU ms/checkout':>16} {'cores busy':>11}")
        for name, per_checkout, cores in rows:
            print(f"{name:<20} {per_checkout:>16.2f} {cores:>11.2f}")
        print(f"{'total':<20} {total * 1000 / checkouts:>16.2f} {total / elapsed:>11.2f}")
        print("per checkout: " + ", ".join(f"{per:.2f} {name.replace('_', ' ')}" for name, per in totals.items())
              + " (by command in cpu_budget.json)")
        print(f"-> CPU-bound ceiling on {os.cpu_count()} cores: {os.cpu_count() * 1000 / (total * 1000 / checkouts):.0f}"
              " checkouts/s (load generator not counted)")
        (out / "cpu_budget.json").write_text(json.dumps({
            "rate": args.rate, "seconds": args.seconds, "checkouts": checkouts, "lost": check["lost"],
            "cpu_ms_per_checkout": {name: per for name, per, _ in rows}, "total_ms": total * 1000 / checkouts,
            "work_per_checkout": work,
        }, indent=1))
        print(f"results: {out}")
        return 0 if check["lost"] == 0 and math.isfinite(total) else 1
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
