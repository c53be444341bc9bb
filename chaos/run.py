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
import json
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from chaos.stack import BREAKER, VENDOR_TIMEOUT_SECONDS, ChaosStack

ROOT = Path(__file__).resolve().parent.parent


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


def seed(stack: ChaosStack) -> str:
    """Templates, the four sandbox vendors (short timeouts, small fast breakers), an API client."""
    from checkout.api_keys import api_client_create
    from notifications.demo import demo_templates_install, demo_vendors_install
    from notifications.models import Vendor

    demo_templates_install()
    demo_vendors_install(host="127.0.0.1", ports=stack.sandbox_ports(), timeout=VENDOR_TIMEOUT_SECONDS)
    Vendor.objects.update(**BREAKER)
    _client, key = api_client_create(name="chaos-load", rate_limit_per_minute=100_000)
    return key


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


def write_summary(results: list, out: Path, started: float) -> str:
    out.mkdir(parents=True, exist_ok=True)
    rendered = table(results)
    lines = [
        "# Chaos run",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {time.time() - started:.0f} s in total. "
        "Counts come from the sandbox vendors' inboxes, which dedupe nothing (as Twilio and SMTP relays): a "
        "notification delivered more than once is a customer address holding two or more messages of one "
        "checkout. Flagged: Beacon marked it possible_duplicate; an unflagged one fails its scenario.",
        "",
        rendered,
    ]
    for r in results:
        lines.append(f"## {r.number}. {r.name} — {'PASS' if r.passed else 'FAIL'} ({r.seconds:.0f} s)\n")
        lines += [f"- [{'x' if c.ok else ' '}] {c.what}{': ' + c.detail if c.detail else ''}" for c in r.checks]
        lines += [f"- note: {note}" for note in r.notes]
        lines.append("")
    (out / "summary.md").write_text("\n".join(lines))
    (out / "summary.json").write_text(json.dumps([r.as_dict() for r in results], indent=2))
    return rendered


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
    stack = ChaosStack(server_database_url=server_url, log_dir=log_dir)
    # SIGTERM (CI timeout) runs the finally below like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    results = []
    try:
        print(f"chaos: database {stack.database_url.rsplit('/', 1)[-1]}, logs in {log_dir}", flush=True)
        stack.runner_environ()
        import django

        django.setup()
        from chaos.scenarios.common import Chaos, ScenarioResult

        try:
            stack.database_create()
            stack.start_services()
            api_key = seed(stack)
            stack.start_processes()
        except Exception:
            traceback.print_exc()
            _print_logs(stack)
            return 2
        print(f"chaos: stack up in {time.time() - started:.0f}s (web {stack.base_url}, redis :{stack.redis.port}, "
              f"sandbox :{stack.sandbox_port}, db proxy :{stack.proxy.listen_port})", flush=True)
        chaos = Chaos(stack, api_key)
        wanted = {int(n) for n in args.only.split(",") if n.strip()}
        for number, scenario in _scenarios().items():
            if wanted and number not in wanted:
                continue
            print(f"\n== scenario {number}: {scenario.__module__.rsplit('.', 1)[-1]}", flush=True)
            scenario_started = time.monotonic()
            try:
                result = scenario(chaos)
            except Exception as exc:
                traceback.print_exc()
                result = ScenarioResult(number, scenario.__module__.rsplit(".", 1)[-1])
                result.check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
            result.seconds = time.monotonic() - scenario_started
            _keep_alive(stack, result)
            results.append(result)
            print(f"== scenario {number}: {'PASS' if result.passed else 'FAIL'} in {result.seconds:.0f}s", flush=True)
    except KeyboardInterrupt:
        print("chaos: interrupted", file=sys.stderr)
    finally:
        stack.stop()
    rendered = write_summary(results, out, started)
    print("\n" + rendered)
    print(f"chaos: {sum(r.passed for r in results)}/{len(results)} scenarios passed in {time.time() - started:.0f}s; "
          f"summary in {out / 'summary.md'}", flush=True)
    if not all(r.passed for r in results) or not results:
        _print_logs(stack)
        return 1
    return 0


def _keep_alive(stack: ChaosStack, result) -> None:
    """A process that died outside a planned kill is a finding: say so and start it again."""
    for name, alive in stack.processes_alive().items():
        if not alive:
            result.check(f"{name} still running after the scenario", False, stack.processes[name].log_tail(5))
            if name.startswith("worker"):
                stack.worker_start(name)
                stack.worker_wait_ready(name)
            else:
                stack.processes[name].start()


def _print_logs(stack: ChaosStack) -> None:
    for name, process in stack.processes.items():
        print(f"\n--- last lines of {name} ({process.log_path})", file=sys.stderr)
        print(process.log_tail(15), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
