"""What the peer and Beacon lose or send twice when the broker is down or a worker is killed.

Load with one email address and phone number per checkout (chaos/load.py), then counting at the
vendors (bench/inbox.py): of the checkouts whose order was committed, how many customers got
their email and SMS once, more than once, or never, after a bounded wait for late deliveries.
The floor delivers nothing (its outbox has no relay), so it has no row here.

Both systems run their production defaults: the peer Celery's, Beacon its settings' (relay grace
10 s, sweeper 60 s), not the chaos suite's shortened tunables; a fault drains within
`CompareProfile.drain_timeout` or its missing count is what was missing then.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from bench import scenarios
from bench.compare import DELIVERING, CompareProfile, Systems, rotated
from bench.inbox import inbox_tally, sandbox_messages
from bench.stack import STARTUP_TIMEOUT, WORKER_NICE, WORKER_THREADS, Stack
from chaos.load import LoadRun, Result
from harness.processes import celery_worker, wait_until

# After the last expected message arrives, wait this long for late duplicates before counting.
SETTLE_SECONDS = 4.0


def _committed_emails(systems: Systems, name: str, emails: list[str]) -> set[str]:
    if name == "peer":
        return systems.peer.orders_committed(emails)
    from checkout.models import Order

    return set(Order.objects.filter(customer_email__in=emails).values_list("customer_email", flat=True))


def count_deliveries(systems: Systems, name: str, results: list[Result], *, timeout: float) -> dict[str, Any]:
    """Poll the inboxes until every committed checkout's email and SMS arrived (or `timeout`),
    settle, then tally per channel; with the answers the load got."""
    emails = [r.recipient.email for r in results]
    committed = _committed_emails(systems, name, emails)
    expected: dict[str, str] = {}
    for r in results:
        if r.recipient.email in committed:
            expected[r.recipient.email] = "email"
            expected[r.recipient.phone] = "sms"
    control = systems.control
    deadline = time.monotonic() + timeout
    tally = inbox_tally(expected, sandbox_messages(control))
    while any(t.missing for t in tally.values()) and time.monotonic() < deadline:
        time.sleep(1.0)
        tally = inbox_tally(expected, sandbox_messages(control))
    time.sleep(SETTLE_SECONDS)
    tally = inbox_tally(expected, sandbox_messages(control))
    answered = sum(1 for r in results if r.status == 201)
    return {
        "checkouts": len(results), "statuses": dict(sorted(Counter(str(r.status) for r in results).items())),
        "answered_201": answered, "committed": len(committed),
        # An order the client was not told about (the peer's on_commit raised after COMMIT: a 500).
        "committed_not_answered_201": len(committed - {r.recipient.email for r in results if r.status == 201}),
        "max_latency_ms": max((r.latency * 1000 for r in results), default=0.0),
        "channels": {channel: t.as_dict() for channel, t in sorted(tally.items())},
        "waited_s": timeout,
    }


def _target(systems: Systems, name: str) -> tuple[str, str]:
    t = systems.targets[name]
    return t.base_url, t.api_key


def broker_down(systems: Systems, name: str, cp: CompareProfile, echo) -> dict[str, Any]:
    """Checkouts at `fault_rate`; the system's Redis (its broker) stopped for the middle part,
    then started again empty (no persistence: what it held is gone, as in the chaos suite)."""
    before, during, after = cp.broker_down
    server = systems.peer.redis if name == "peer" else systems.stack.redis
    scenarios.sandbox_fresh(systems.stack, scenarios.VENDOR_LATENCY_FAST_MS)
    base_url, key = _target(systems, name)
    run = LoadRun(base_url=base_url, api_key=key, tag=f"bench-{name}-broker", rate=cp.fault_rate,
                  seconds=before + during + after).start()
    time.sleep(before)
    server.stop()
    echo(f"  {name}: broker stopped at t={run.elapsed():.1f}s")
    time.sleep(during)
    server.start()
    echo(f"  {name}: broker started again (empty) at t={run.elapsed():.1f}s")
    result = count_deliveries(systems, name, run.join(), timeout=cp.drain_timeout)
    result["outage_seconds"] = during
    return result


def _beacon_worker_kill(stack: Stack, serial: int) -> None:
    """SIGKILL Beacon's oldest worker and start a replacement (threads, the bench's shape)."""
    victim = stack.workers.pop(0)
    victim.kill()
    worker = celery_worker(stack.env, name=f"{victim.name}-after-kill-{serial}", pool="threads",
                           concurrency=WORKER_THREADS, log_dir=stack.log_dir, nice=WORKER_NICE).start()
    stack.workers.append(worker)
    wait_until(lambda: "ready." in worker.log_path.read_text(errors="replace"), timeout=STARTUP_TIMEOUT,
               what=worker.name)


def worker_killed(systems: Systems, name: str, cp: CompareProfile, echo) -> dict[str, Any]:
    """Checkouts at `fault_rate` with vendors slow enough to keep sends in flight; the oldest
    worker SIGKILLed at each of `kills_at` and replaced."""
    scenarios.sandbox_fresh(systems.stack, cp.kill_vendor_ms)
    base_url, key = _target(systems, name)
    run = LoadRun(base_url=base_url, api_key=key, tag=f"bench-{name}-kill", rate=cp.fault_rate,
                  seconds=cp.kill_load_seconds).start()
    for serial, at in enumerate(cp.kills_at, start=1):
        time.sleep(max(0.0, at - run.elapsed()))
        if name == "peer":
            systems.peer.worker_kill()
        else:
            _beacon_worker_kill(systems.stack, serial)
        echo(f"  {name}: worker SIGKILLed at t={at:g}s and replaced")
    results = run.join()
    scenarios.vendors_latency(systems.stack, scenarios.VENDOR_LATENCY_FAST_MS)  # the backlog drains at 50 ms
    result = count_deliveries(systems, name, results, timeout=cp.drain_timeout)
    result["kills"] = len(cp.kills_at)
    return result


def faults(systems: Systems, cp: CompareProfile, echo) -> dict[str, Any]:
    """Each fault once per system (peer and Beacon alternate which goes first)."""
    out: dict[str, Any] = {"broker_down": {}, "worker_killed": {}}
    echo(f"== peer vs Beacon: broker down {cp.broker_down[1]:g}s at {cp.fault_rate:g} checkouts/s")
    for name in rotated(DELIVERING, 0):
        out["broker_down"][name] = broker_down(systems, name, cp, echo)
    echo(f"== peer vs Beacon: a worker SIGKILLed {len(cp.kills_at)} time(s) at {cp.fault_rate:g} checkouts/s")
    for name in rotated(DELIVERING, 1):
        out["worker_killed"][name] = worker_killed(systems, name, cp, echo)
    return out
