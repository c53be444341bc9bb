"""`make bench` / `make bench-quick`: start a private Beacon stack, run the scenarios of issue 6,
write bench/results/<timestamp>/ (results.json, summary.md, PNG plots, process logs).

    python -m bench.run [--quick] [--only floor,sync,outage,pipeline,daily,compare,faults]

`compare` and `faults` run the floor (../shared/bench-floor/limitapp.py) and the peer
(bench/peer/) beside Beacon (bench/compare.py, bench/faults.py).

Runs on a PostgreSQL server of its own (bench/database_server.py: durable, with a connection for
every thread it starts, deleted afterwards), or with `--database-url` on that server, which must
have the room (the database beacon_bench, or $BENCH_DATABASE, is dropped and created there).
Needs Debian's `hey` (closed-loop maximum throughput); locust comes from requirements-dev.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from bench import report, scenarios
from bench.compare_run import comparison_run
from bench.database_server import PrivateServer, connections_needed, server_room_check
from bench.stack import BenchStack, stop_on_sigterm

RESULTS = Path(__file__).resolve().parent / "results"
ALL = ("floor", "sync", "pipeline", "daily", "outage", "compare", "faults")
# The benchmark's own server has twice the connections its processes can hold at once.
PRIVATE_SERVER_HEADROOM = 2
# Offered rate of the outage scenario (checkouts/s): comfortably below what this box sustains.
OUTAGE_RATE = 15.0

_t0 = time.monotonic()


def echo(message: str) -> None:
    print(f"[{time.monotonic() - _t0:6.0f}s] {message}", flush=True)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))) / 1024 / 1024
    load = os.getloadavg()
    return (f"{os.cpu_count()} vCPU ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; load average at start {load[0]:.1f} (shared, noisy machine: "
            f"load generator, web, workers, sandbox, PostgreSQL and Redis share the same cores)")


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not rates or any(rate <= 0 for rate in rates) or list(rates) != sorted(rates):
        raise argparse.ArgumentTypeError(f"want positive rates in ascending order, got {text!r}")
    return rates


def _stop_all(stack: BenchStack | None, private: PrivateServer | None) -> None:
    """Stop the stack, then the benchmark's own server; a failure is logged, so the results
    are still written."""
    for what, stop in (("the stack", stack and stack.stop), ("the PostgreSQL server", private and private.stop)):
        if stop:
            try:
                stop()
            except Exception:
                logging.getLogger(__name__).exception("stopping %s failed", what)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run: one repetition per point (about 12 minutes)")
    parser.add_argument("--only", default=",".join(ALL), help="comma-separated scenarios: " + ",".join(ALL))
    parser.add_argument("--database-url", help="run on this PostgreSQL server (postgres://user@host:port/db) "
                        "instead of the benchmark's own; it must have a connection for every thread the "
                        "scenarios start")
    parser.add_argument("--ladder", type=_rates, help="checkouts/s tried for the sustained rate, ascending "
                        "(e.g. 40,60,80); default: the profile's")
    args = parser.parse_args()
    profile = scenarios.QUICK if args.quick else scenarios.FULL
    if args.ladder:
        profile = dataclasses.replace(profile, ladder=args.ladder)
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(ALL))
    if unknown or not wanted:
        problem = f"unknown scenario {', '.join(unknown)}" if unknown else "no scenario named"
        parser.error(f"--only: {problem}; choose from {','.join(ALL)}")
    room = None
    if os.environ.get("DATABASE_URL") and not args.database_url:
        echo("note: DATABASE_URL is not used; the benchmark runs on its own server (--database-url to choose one)")
    if args.database_url:
        try:
            room = server_room_check(args.database_url, set(wanted))
        except ValueError as exc:
            parser.exit(2, f"bench: {exc}\n")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"{stamp}{'-quick' if args.quick else ''}"
    logs = out / "logs"
    logs.mkdir(parents=True)
    stop_on_sigterm()
    private = None
    if room is not None:
        server_url = args.database_url
        server = f"{urlsplit(server_url).hostname}:{urlsplit(server_url).port or 5432} (max_connections {room.max_connections})"
    else:
        # Its log beside logs/, whose files are scanned for the processes PostgreSQL refused.
        private = PrivateServer(out / "database", log=out / "postgres-server.log",
                                max_connections=PRIVATE_SERVER_HEADROOM * connections_needed(set(ALL)))
        server = f"the benchmark's own (max_connections {private.max_connections}, deleted after the run)"
    stack = None
    results: dict[str, object] = {"started": stamp, "profile": profile.name, "machine": machine(),
                                  "database_server": server}
    if set(wanted) != set(ALL):
        results["only"] = [name for name in ALL if name in wanted]
    echo(f"results in {out}")
    try:
        if private is not None:
            echo("starting the benchmark's own PostgreSQL server (durable)")
            server_url = private.start()
        stack = BenchStack(server_url=server_url, log_dir=logs, warm_checkouts=profile.warm_checkouts)
        stack.start(progress=echo)
        results["stack"] = stack.describe()
        stack.workers_start("threads", 2)
        if "floor" in wanted:
            results["floor"] = scenarios.floor(stack, profile, logs, echo)
        if "sync" in wanted:
            results["sync_vs_async"] = scenarios.sync_vs_async(stack, profile, logs, echo)
        best = ("threads", 2)
        if "pipeline" in wanted:
            results["pipeline"] = pipeline = scenarios.pipeline(stack, profile, logs, echo)
            best = scenarios.workers_for_daily_volume(pipeline["points"], default=best)
            results["best_workers"] = list(best)
        if "daily" in wanted:
            results["daily_volume"] = scenarios.daily_volume(stack, profile, best[0], best[1], logs, echo)
        if "outage" in wanted:
            stack.workers_start(*best)
            results["outage"] = scenarios.outage(stack, profile, OUTAGE_RATE, logs, echo)
        if {"compare", "faults"} & set(wanted):
            stack.workers_start(*best)
            results["compare"] = {}
            comparison_run(stack, results["compare"], quick=args.quick, wanted=set(wanted), server_url=server_url,
                           log_dir=logs, echo=echo)
    except KeyboardInterrupt:
        echo("interrupted: stopping the stack")
        results["interrupted"] = True
    except Exception as exc:  # what ran so far is still written below
        logging.getLogger(__name__).exception("the benchmark stopped")
        echo(f"failed ({type(exc).__name__}: {exc}): stopping the stack")
        results["interrupted"] = True
        results["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        echo("stopping the stack")
        _stop_all(stack, private)
    results["connection_refusals"] = report.connection_refusals(logs)
    results["plots"] = report.plots(results, out)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    summary = report.summary_markdown(results)
    (out / "summary.md").write_text(summary)
    print(summary)
    echo(f"done: {out}")
    return 1 if results.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
