"""`make chaos`: break Beacon on purpose, under load, and count what the customers received.

    python -m chaos.run [--only 1,3] [--out artifacts/chaos]

Starts its own stack (chaos/stack.py), seeds it, runs the scenarios in order (one stack for
all, each scenario with its own customers, so the sandbox inboxes can be counted per
scenario), prints a table and writes it to `<out>/summary.md` and `<out>/summary.json`.
Exits 1 if any scenario fails, 2 if the stack could not start. Every process it started is
stopped on the way out, on failure and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from chaos.runner import Suite, suite_run
from chaos.stack import BREAKER, CHAOS_DATABASE, VENDOR_TIMEOUT_SECONDS, WORKERS, chaos_stack

ROOT = Path(__file__).resolve().parent.parent
# The summary's sentence on what the table counts.
INTRO = (
    "Counts come from the sandbox vendors' inboxes, which dedupe nothing (as Twilio and SMTP relays): a "
    "notification delivered more than once is a customer address holding two or more messages of one "
    "checkout. Flagged: Beacon marked it possible_duplicate; an unflagged one fails its scenario."
)


def _scenarios() -> dict[int, Callable]:
    from chaos.scenarios import (
        answer_lost,
        s1_redis_outage,
        s2_worker_kill,
        s3_primary_degraded,
        s4_dead_letters,
        s5_database_outage,
        s6_idempotency,
        untrusted_relay,
    )

    modules = (s1_redis_outage, s2_worker_kill, s3_primary_degraded, s4_dead_letters, s5_database_outage, s6_idempotency)
    scenarios = {number: module.run for number, module in enumerate(modules, start=1)}
    return {**scenarios, 7: answer_lost.run_sms, 8: answer_lost.run_email, 9: untrusted_relay.run}


def table(results: list) -> str:
    """One row per scenario and channel; the counts come from the vendors' inboxes."""
    header = (
        "| # | scenario | checkouts | answers | channel | expected | delivered once | more than once, flagged "
        "| more than once, unflagged | max checkout latency | result |\n"
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---|\n"
    )
    rows = []
    for r in results:
        answers = ", ".join(f"{status}×{n}" for status, n in r.statuses.items()) or "-"
        lead = f"| {r.number} | {r.name} | {r.checkouts} | {answers} |"
        tail = f" {r.max_latency_ms:.0f} ms | {'PASS' if r.passed else 'FAIL'} |"
        for index, (channel, c) in enumerate(sorted(r.channels.items()) or [("-", None)]):
            counts = f" {c.expected} | {c.once} | {c.more_flagged} | {c.more_unflagged} |" if c else " - | - | - | - |"
            rows.append((lead if index == 0 else "| | | | |") + f" {channel} |" + counts + (tail if index == 0 else " | |"))
    return header + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated scenario numbers (default: all)")
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "chaos"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    log_dir = out / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    started = time.time()

    server_url = os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/beacon")
    stack = chaos_stack(server_database_url=server_url, log_dir=log_dir)
    print(f"chaos: database {CHAOS_DATABASE}, logs in {log_dir}", flush=True)

    def start() -> str:
        stack.services_start()
        stack.database_create()
        api_key = stack.seed(client_name="chaos-load", rate_limit_per_minute=100_000,
                             vendor_timeout=VENDOR_TIMEOUT_SECONDS, breaker=BREAKER)
        stack.processes_start(workers=WORKERS)
        print(f"chaos: stack up in {time.time() - started:.0f}s (web {stack.base_url}, redis :{stack.redis.port}, "
              f"sandbox :{stack.sandbox_port}, db proxy :{stack.proxy.listen_port})", flush=True)
        return api_key

    suite = Suite(label="chaos", title="# Chaos run", intro=INTRO, table=table, scenarios=_scenarios,
                  scenario_name=lambda scenario: scenario.__module__.rsplit(".", 1)[-1])
    return suite_run(suite, stack, start=start, only=args.only, out=out, started=started)


if __name__ == "__main__":
    sys.exit(main())
