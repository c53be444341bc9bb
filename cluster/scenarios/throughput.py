"""Throughput against 1, 2 and 4 worker hosts, vendors answering in 50 ms.

For each count: only that many worker hosts run; they stop consuming (Celery's cancel_consumer),
BACKLOG checkouts are taken through HAProxy (their triggers wait in the broker), then every
worker host starts consuming at once and the clock runs until the last of the 2 x BACKLOG
messages is in the sandbox inboxes. Beat is stopped meanwhile, so the relay does not hand the
waiting triggers over a second time. CPU is read from /proc for every process of every host,
so the result is also given per CPU-second: all hosts share this machine's two cores.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from chaos.load import Recipient, checkout_body, checkout_post, recipient_new
from chaos.scenarios.common import Chaos, ScenarioResult, record_inbox
from cluster.network import namespace_pids, namespaces
from cluster.stack import WORKER_CONCURRENCY, WORKER_HOSTS, ClusterStack

# Checkouts queued per point: 2 x BACKLOG messages, a few seconds' work for 4 hosts.
BACKLOG = 200
COUNTS = (1, 2, 4)
VENDOR_LATENCY_MS = 50
QUEUES = ("default", "email", "sms")
# Clients taking the backlog's checkouts (before the clock starts).
CLIENTS = 8


def _cpu_seconds() -> float:
    """utime + stime of every process in every cluster namespace (this runner's included)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for namespace in namespaces():
        for pid in namespace_pids(namespace):
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def _hosts_running(stack: ClusterStack, count: int) -> None:
    wanted = list(WORKER_HOSTS[:count])
    for name in WORKER_HOSTS:
        process = stack.processes.get(name)
        if name not in wanted and process is not None:
            process.stop(timeout=20)
            del stack.processes[name]  # a host switched off on purpose, not one that died
    for name in wanted:
        if stack.processes.get(name) is None or not stack.processes[name].alive():
            stack.worker_start(name)
    for name in wanted:
        stack.worker_wait_ready(name)
    stack.worker_hosts = wanted


def _consumers(*, on: bool) -> None:
    from config.celery import app

    for queue in QUEUES:
        if on:
            app.control.add_consumer(queue, reply=True, timeout=3)
        else:
            app.control.cancel_consumer(queue, reply=True, timeout=3)


def worker_host_throughput(chaos: Chaos) -> ScenarioResult:
    stack: ClusterStack = chaos.stack
    result = ScenarioResult(6, f"throughput: {BACKLOG} checkouts drained by 1, 2, 4 worker hosts (vendors 50 ms)")
    before = list(stack.worker_hosts)
    for name in ("smtp-primary", "sms-primary"):
        stack.sandbox.set_faults(name, latency_ms=VENDOR_LATENCY_MS)
    stack.processes["beat"].stop(timeout=20)
    rows = []
    try:
        for count in COUNTS:
            _hosts_running(stack, count)
            _consumers(on=False)
            with ThreadPoolExecutor(CLIENTS) as pool:
                answers = list(pool.map(lambda _n, tag=f"tput{count}": _checkout(chaos, tag), range(BACKLOG)))
            recipients = [r for r, status in answers if status == 201]
            cpu_before, started = _cpu_seconds(), time.time()
            _consumers(on=True)
            count_in = chaos.wait_delivered(recipients, timeout=120)
            # wait_delivered settles a few seconds after the last arrival: take the arrival time.
            elapsed = _last_arrival(chaos, recipients) - started
            cpu = _cpu_seconds() - cpu_before
            delivered = count_in.delivered
            rate = delivered / elapsed if elapsed > 0 else 0.0
            rows.append((count, delivered, elapsed, rate, cpu))
            result.check(f"{count} worker host(s): every message of the backlog delivered", not count_in.missing,
                         f"{delivered}/{count_in.expected} in {elapsed:.1f}s = {rate:.0f}/s")
            record_inbox(result, count_in)
            result.checkouts += len(answers)
    finally:
        _consumers(on=True)
        for name in ("smtp-primary", "sms-primary"):
            stack.sandbox.clear_faults(name)
        stack.processes["beat"].start()
        _hosts_running(stack, len(before))
    for count, delivered, elapsed, rate, cpu in rows:
        result.note(f"{count} worker host(s) x {WORKER_CONCURRENCY} threads: {delivered} messages in {elapsed:.1f} s = "
                    f"{rate:.1f}/s; {cpu:.1f} CPU-s on all hosts = {delivered / cpu if cpu else 0:.1f} messages per "
                    f"CPU-second, {cpu / elapsed if elapsed else 0:.2f} of 2 cores busy")
    result.statuses = {"201": result.checkouts}
    return result


def _checkout(chaos: Chaos, tag: str) -> tuple[Recipient, int]:
    recipient = recipient_new(tag)
    return recipient, checkout_post(chaos.stack.base_url, chaos.api_key, checkout_body(recipient))[0]


def _last_arrival(chaos: Chaos, recipients: list) -> float:
    """Wall-clock time the last expected message reached an inbox (sandbox's received_at)."""
    addresses = {r.email for r in recipients} | {r.phone for r in recipients}
    latest = 0.0
    for instance in ("smtp-primary", "smtp-fallback", "sms-primary", "sms-fallback"):
        for message in chaos.stack.sandbox.messages(instance):
            to = message["to"] if isinstance(message["to"], list) else [message["to"]]
            if addresses.intersection(to):
                latest = max(latest, float(message.get("received_at", 0)))
    return latest
