"""`make cluster-test`: Beacon on several hosts (network namespaces), with hosts failing under load.

    python -m cluster.run [--only 1,3] [--out artifacts/cluster]

Needs root and iproute2, PostgreSQL's server binaries, PgBouncer, HAProxy (and RabbitMQ for
its scenario). In the machine's namespace it deletes any `bcn-*` namespace a killed run left
behind, builds the network (cluster/network.py), then runs itself again inside the `runner`
host (`--inside`), which starts the stack (cluster/stack.py), seeds it and plays the scenarios.
Whatever happens there, the network and every process on it are destroyed on the way out.
Writes `<out>/summary.md` and `<out>/summary.json`; exits 1 if any scenario fails, 2 if the
stack could not start.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from cluster.network import in_namespace, network_create, network_destroy
from cluster.stack import HOSTS, ClusterStack

ROOT = Path(__file__).resolve().parent.parent
# Scratch space of the run (databases, configs): a fixed path, so a killed run's is removed.
RUN_DIR = Path("/tmp/bcn-cluster")  # noqa: S108 - root-only harness; removed and made afresh by each run
REQUIRED_TOOLS = ("ip", "setpriv", "haproxy", "pgbouncer", "epmd")
# Held by the run that owns the `bcn-*` namespaces: a second run at the same time would delete
# the first one's hosts under it. The kernel drops the lock when its holder dies, however.
LOCK_PATH = Path("/run/lock/bcn-cluster.lock")


def _scenarios() -> dict[int, Callable]:
    from cluster.scenarios import breaker, hosts, rabbitmq, throughput

    return {
        1: hosts.worker_partitioned,
        2: hosts.worker_host_killed,
        3: hosts.web_host_killed,
        4: hosts.pgbouncer_restarted,
        5: breaker.breaker_shared,
        6: throughput.worker_host_throughput,
        7: rabbitmq.rabbitmq_node_killed,  # last: it moves the stack to RabbitMQ
    }


def outside(argv: list[str]) -> int:
    """Build the network, run the suite on the runner host, destroy the network whatever happens."""
    if os.geteuid() != 0:
        print("cluster: needs root (network namespaces)", file=sys.stderr)
        return 2
    missing = [tool for tool in REQUIRED_TOOLS if not shutil.which(tool)]
    if missing:
        print(f"cluster: missing {', '.join(missing)} (make cluster-test installs them with apt-get)", file=sys.stderr)
        return 2
    LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
    lock = open(LOCK_PATH, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"cluster: another run holds {LOCK_PATH}; run one at a time", file=sys.stderr)
        return 2
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: object) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        network_destroy()
        shutil.rmtree(RUN_DIR, ignore_errors=True)
        network_create(list(HOSTS.values()))
        command = in_namespace(HOSTS["runner"], [sys.executable, "-m", "cluster.run", "--inside", *argv])
        child = subprocess.Popen(command, cwd=ROOT)
        return child.wait()
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        network_destroy()
        shutil.rmtree(RUN_DIR, ignore_errors=True)
        print("cluster: network and hosts torn down", flush=True)


def seed(stack: ClusterStack) -> str:
    """Templates, the four sandbox vendors (chaos's short timeouts and small breakers), an API client."""
    from chaos.stack import BREAKER, VENDOR_TIMEOUT_SECONDS
    from checkout.api_keys import api_client_create
    from notifications.demo import demo_templates_install, demo_vendors_install
    from notifications.models import Vendor

    demo_templates_install()
    demo_vendors_install(host=stack.address("vendors"), ports=stack.sandbox_ports(), timeout=VENDOR_TIMEOUT_SECONDS)
    Vendor.objects.update(**BREAKER)
    _client, key = api_client_create(name="cluster-load", rate_limit_per_minute=100_000)
    return key


def inside(args: argparse.Namespace) -> int:
    out = Path(args.out)
    log_dir = out / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    started = time.time()
    stack = ClusterStack(log_dir=log_dir, run_dir=RUN_DIR, worker_hosts=args.worker_hosts)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    results = []
    try:
        stack.runner_environ()
        import django

        django.setup()
        from chaos.scenarios.common import Chaos, ScenarioResult

        try:
            stack.start_services()
            stack.rabbitmq_start()  # boots while the rest starts; waited for by scenario 7
            stack.migrate()
            api_key = seed(stack)
            stack.start_processes()
        except Exception:
            traceback.print_exc()
            _print_logs(stack)
            return 2
        print(f"cluster: {len(HOSTS)} hosts up in {time.time() - started:.0f}s (API {stack.base_url}, "
              f"workers on {', '.join(stack.worker_hosts)}), logs in {log_dir}", flush=True)
        chaos = Chaos(stack, api_key)
        wanted = {int(n) for n in args.only.split(",") if n.strip()}
        for number, scenario in _scenarios().items():
            if wanted and number not in wanted:
                continue
            print(f"\n== scenario {number}: {scenario.__name__}", flush=True)
            scenario_started = time.monotonic()
            try:
                result = scenario(chaos)
            except Exception as exc:
                traceback.print_exc()
                result = ScenarioResult(number, scenario.__name__)
                result.check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
            result.seconds = time.monotonic() - scenario_started
            _keep_alive(stack, result)
            results.append(result)
            print(f"== scenario {number}: {'PASS' if result.passed else 'FAIL'} in {result.seconds:.0f}s", flush=True)
    except KeyboardInterrupt:
        print("cluster: interrupted", file=sys.stderr)
    finally:
        stack.stop()
    print("\n" + write_summary(results, out, started))
    print(f"cluster: {sum(r.passed for r in results)}/{len(results)} scenarios passed in {time.time() - started:.0f}s; "
          f"summary in {out / 'summary.md'}", flush=True)
    if not results or not all(r.passed for r in results):
        _print_logs(stack)
        return 1
    return 0


def table(results: list) -> str:
    """The failure table: what the customers' inboxes hold after each failure."""
    rows = [
        "| # | failure | checkouts | answers | expected | delivered once | duplicates flagged | duplicates unflagged "
        "| lost | result |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        answers = ", ".join(f"{status}×{n}" for status, n in r.statuses.items()) or "-"
        once = sum(c.once for c in r.channels.values())
        flagged = sum(c.more_flagged for c in r.channels.values())
        unflagged = sum(c.more_unflagged for c in r.channels.values())
        rows.append(
            f"| {r.number} | {r.name} | {r.checkouts} | {answers} | {r.expected} | {once} "
            f"| {flagged} | {unflagged} | {r.expected - r.delivered} | {'PASS' if r.passed else 'FAIL'} |"
        )
    return "\n".join(rows) + "\n"


def write_summary(results: list, out: Path, started: float) -> str:
    out.mkdir(parents=True, exist_ok=True)
    rendered = table(results)
    lines = [
        "# Cluster run", "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {time.time() - started:.0f} s in total. Counts come "
        "from the sandbox vendors' inboxes: one expected message per checkout and channel.", "", rendered,
    ]
    for r in results:
        lines.append(f"## {r.number}. {r.name} — {'PASS' if r.passed else 'FAIL'} ({r.seconds:.0f} s)\n")
        lines += [f"- [{'x' if c.ok else ' '}] {c.what}{': ' + c.detail if c.detail else ''}" for c in r.checks]
        lines += [f"- note: {note}" for note in r.notes]
        lines.append("")
    (out / "summary.md").write_text("\n".join(lines))
    (out / "summary.json").write_text(json.dumps([r.as_dict() for r in results], indent=2))
    return rendered


def _keep_alive(stack: ClusterStack, result) -> None:
    """A process that died outside a planned kill is a finding: say so and start it again."""
    for name, alive in stack.processes_alive().items():
        if not alive:
            result.check(f"{name} still running after the scenario", False, stack.processes[name].log_tail(5))
            stack.processes[name].start()


def _print_logs(stack: ClusterStack) -> None:
    for name, process in stack.processes.items():
        print(f"\n--- last lines of {name} ({process.log_path})", file=sys.stderr)
        print(process.log_tail(15), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated scenario numbers (default: all)")
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "cluster"))
    parser.add_argument("--worker-hosts", type=int, default=2, choices=(2, 3, 4))
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        return inside(args)
    return outside(argv)


if __name__ == "__main__":
    sys.exit(main())
