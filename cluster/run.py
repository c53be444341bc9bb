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
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from chaos.runner import Suite, suite_run
from chaos.stack import BREAKER, VENDOR_TIMEOUT_SECONDS
from cluster.network import in_namespace, network_create, network_destroy
from cluster.stack import HOSTS, ClusterStack

ROOT = Path(__file__).resolve().parent.parent
# Scratch space of the run (databases, configs): a fixed path, so a killed run's is removed.
RUN_DIR = Path("/tmp/bcn-cluster")  # noqa: S108 - root-only harness; removed and made afresh by each run
REQUIRED_TOOLS = ("ip", "setpriv", "haproxy", "pgbouncer", "epmd")
# Held by the run that owns the `bcn-*` namespaces: a second run at the same time would delete
# the first one's hosts under it. The kernel drops the lock when its holder dies, however.
LOCK_PATH = Path("/run/lock/bcn-cluster.lock")
# The summary's sentence on what the table counts.
INTRO = "Counts come from the sandbox vendors' inboxes: one expected message per checkout and channel."


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


def outside(argv: list[str], out: Path) -> int:
    """Build the network, run the suite on the runner host, destroy the network whatever happens;
    then print the run's last block (chaos/runner.py), so that it ends the console."""
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
        (out / "summary.txt").unlink(missing_ok=True)
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
        last_block = out / "summary.txt"
        print(last_block.read_text() if last_block.exists() else "cluster: the run wrote no summary", flush=True)


def inside(args: argparse.Namespace) -> int:
    out = Path(args.out)
    log_dir = out / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    started = time.time()
    stack = ClusterStack(log_dir=log_dir, run_dir=RUN_DIR, worker_hosts=args.worker_hosts)

    def start() -> str:
        stack.start_services()
        stack.rabbitmq_start()  # boots while the rest starts; waited for by scenario 7
        stack.migrate()
        # The chaos suite's short vendor timeouts and small breakers.
        api_key = stack.seed(client_name="cluster-load", rate_limit_per_minute=100_000,
                             vendor_timeout=VENDOR_TIMEOUT_SECONDS, breaker=BREAKER)
        stack.start_processes()
        print(f"cluster: {len(HOSTS)} hosts up in {time.time() - started:.0f}s (API {stack.base_url}, "
              f"workers on {', '.join(stack.worker_hosts)}), logs in {log_dir}", flush=True)
        return api_key

    suite = Suite(label="cluster", title="# Cluster run", intro=INTRO, table=table, scenarios=_scenarios,
                  scenario_name=lambda scenario: scenario.__name__)
    # The machine's side prints the last block, after the network is torn down (outside()).
    return suite_run(suite, stack, start=start, only=args.only, out=out, started=started, last_block_print=False)


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
    return outside(argv, Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
