"""Hosts failing under load: a worker host cut off, a worker host killed, a web host killed,
PgBouncer restarted. Each ends with the sandbox inboxes counted (chaos/scenarios/common.py).
"""

from __future__ import annotations

import time

from chaos.scenarios.common import Chaos, ScenarioResult, all_recipients, committed, record_inbox
from cluster.load import RetryingLoadRun
from cluster.network import link_set
from cluster.stack import ClusterStack
from harness.processes import wait_until

RATE, SECONDS = 4.0, 20.0
# Vendor latency that keeps sends in flight long enough for a fault to land mid-call.
VENDOR_LATENCY_MS = 300
PRIMARIES = ("smtp-primary", "sms-primary")
DELIVERY_TIMEOUT = 90.0
# How long scenario 1 watches its worker host for work in hand before pulling the cable (seconds):
# within the load's 20 s, so the partition still lands while checkouts arrive.
PARTITION_WAIT_FOR_WORK = 10.0


def _load(chaos: Chaos, tag: str) -> RetryingLoadRun:
    return RetryingLoadRun(base_url=chaos.stack.base_url, api_key=chaos.api_key, tag=tag, rate=RATE,
                           seconds=SECONDS).start()


def _slow_primaries(chaos: Chaos, *, on: bool) -> None:
    for name in PRIMARIES:
        if on:
            chaos.stack.sandbox.set_faults(name, latency_ms=VENDOR_LATENCY_MS)
        else:
            chaos.stack.sandbox.clear_faults(name)


def _running_tasks(host: str, *, within: float = 4.0) -> int:
    """Work the worker on `host` is running, polled until there is some or `within` ends: its
    Celery tasks (`inspect active`) and the dispatches in its trigger listener's threads
    (`inspect dispatches_here`, config/celery_control.py)."""
    from config.celery import app

    deadline = time.monotonic() + within
    while True:
        inspect = app.control.inspect(timeout=0.5)
        tasks = inspect.active() or {}
        here = inspect._request("dispatches_here") or {}
        mine = f"worker-{host}-"
        running = sum(len(reply) for name, reply in tasks.items() if name.startswith(mine))
        running += sum(reply.get("running", 0) for name, reply in here.items() if name.startswith(mine))
        if running or time.monotonic() > deadline:
            return running


def _finish(chaos: Chaos, result: ScenarioResult, load: RetryingLoadRun, results: list) -> None:
    """The checks every host failure ends with: answers, one order per key, the inboxes."""
    from checkout.models import Order

    result.record_load(results)
    result.check("every client got its order (201, retrying with its Idempotency-Key)",
                 all(r.status == 201 for r in results), f"statuses {result.statuses}, {load.retried()} clients retried")
    emails = [r.recipient.email for r in results]
    per_email = {}
    for email in Order.objects.filter(customer_email__in=emails).values_list("customer_email", flat=True):
        per_email[email] = per_email.get(email, 0) + 1
    doubles = sum(1 for n in per_email.values() if n > 1)
    result.check("one order per Idempotency-Key", doubles == 0, f"{len(per_email)} orders for {len(emails)} clients, "
                 f"{doubles} with two")
    count = chaos.wait_delivered(committed(all_recipients(results)), timeout=DELIVERY_TIMEOUT)
    record_inbox(result, count)
    duplicates_explain(result, count)


def duplicates_explain(result: ScenarioResult, count) -> None:
    """For each address holding two messages: where they are, and the notification's attempts."""
    from notifications.models import Notification

    for address, instances in count.where.items():
        if len(instances) < 2:
            continue
        for notification in Notification.objects.filter(recipient=address).prefetch_related("attempts__vendor"):
            attempts = "; ".join(
                f"{a.started_at:%H:%M:%S.%f} {a.vendor.name if a.vendor else '?'} {a.outcome or 'open'} {a.error[:90]}"
                for a in sorted(notification.attempts.all(), key=lambda a: a.started_at))
            result.note(f"{address[:12]}… in {instances}: {notification.channel} {notification.status} "
                        f"possible_duplicate={notification.possible_duplicate} attempts: {attempts}")


def worker_partitioned(chaos: Chaos) -> ScenarioResult:
    """A worker host's cable pulled mid-send for 10 s, then plugged back."""
    from notifications.models import AttemptOutcome

    stack: ClusterStack = chaos.stack
    result = ScenarioResult(1, "worker host cut off the network mid-send (10 s)")
    host = stack.hosts[stack.worker_hosts[0]]
    _slow_primaries(chaos, on=True)
    load = _load(chaos, "partition")
    try:
        time.sleep(4)
        # Cut the cable as soon as the host is seen working: both hosts' listeners race for each
        # claim and this one may win few, so a single short look sometimes saw none.
        running = _running_tasks(host.name, within=PARTITION_WAIT_FOR_WORK)
        link_set(host, up=False)
        print(f"    link of {host.name} down at t={load.elapsed():.1f}s", flush=True)
        time.sleep(10)
        link_set(host, up=True)
        print(f"    link of {host.name} up at t={load.elapsed():.1f}s", flush=True)
        results = load.join()
    finally:
        link_set(host, up=True)
        _slow_primaries(chaos, on=False)
    _finish(chaos, result, load, results)
    # Work in hand, seen either way: listed by the host while it was watched, or vendor calls the
    # partition left without an answer (the vendors answer in VENDOR_LATENCY_MS, well within
    # their timeout, so only a call from the cut-off host times out). The listing alone saw
    # none in a CI run whose partition cut an SMTP call of that host mid-send.
    timed_out = _attempts_of(results).filter(outcome=AttemptOutcome.TIMEOUT).count()
    result.check(f"{host.name} was running work when its cable was pulled", running > 0 or timed_out > 0,
                 f"{running} running, {timed_out} vendor calls left without an answer")
    result.check(f"the worker on {host.name} survived the partition", stack.processes[host.name].alive())
    return result


def worker_host_killed(chaos: Chaos) -> ScenarioResult:
    """Every process of a worker host SIGKILLed mid-send; the host comes back 8 s later."""
    stack: ClusterStack = chaos.stack
    result = ScenarioResult(2, "worker host killed whole, back after 8 s")
    name = stack.worker_hosts[-1]
    _slow_primaries(chaos, on=True)
    load = _load(chaos, "hostkill")
    try:
        time.sleep(5)
        running = _running_tasks(name)
        killed = stack.host_kill(name)
        print(f"    {name} killed ({killed} processes) at t={load.elapsed():.1f}s", flush=True)
        time.sleep(8)
        stack.worker_start(name)
        stack.worker_wait_ready(name)
        print(f"    {name} back at t={load.elapsed():.1f}s", flush=True)
        results = load.join()
    finally:
        _slow_primaries(chaos, on=False)
    _finish(chaos, result, load, results)
    # Work in hand, seen either way: listed by the host just before the kill, or vendor calls the
    # kill cut short (closed as "Worker lost" before their resend was delivered, which _finish
    # waited for; no other host failed here). A host's listener may win few claims, so the
    # listing alone sometimes saw none.
    lost_calls = _calls_cut_short(results)
    result.check(f"{name} lost every process, with work running", killed > 0 and (running > 0 or lost_calls > 0),
                 f"{killed} processes, {running} tasks or dispatches running, {lost_calls} vendor calls cut short")
    return result


def _attempts_of(results: list):
    """The vendor calls made for these checkouts' notifications."""
    from notifications.models import DeliveryAttempt

    addresses = [r.recipient.email for r in results] + [r.recipient.phone for r in results]
    return DeliveryAttempt.objects.filter(notification__recipient__in=addresses)


def _calls_cut_short(results: list) -> int:
    """Vendor calls of these checkouts closed as lost with their worker."""
    return _attempts_of(results).filter(error__startswith="Worker lost").count()


def web_host_killed(chaos: Chaos) -> ScenarioResult:
    """web1 killed whole under load: HAProxy routes around it, clients retry with their key."""
    stack: ClusterStack = chaos.stack
    result = ScenarioResult(3, "web host killed whole, back after 8 s")
    haproxy_log_from = len(stack.processes["lb"].log_path.read_text(errors="replace"))
    load = _load(chaos, "webkill")
    time.sleep(6)
    killed = stack.host_kill("web1")
    print(f"    web1 killed ({killed} processes) at t={load.elapsed():.1f}s", flush=True)
    time.sleep(8)
    stack.web_start("web1")
    stack.web_wait_ready("web1")
    print(f"    web1 back at t={load.elapsed():.1f}s", flush=True)

    def haproxy_log() -> str:
        return stack.processes["lb"].log_path.read_text(errors="replace")[haproxy_log_from:]

    try:  # HAProxy takes a host back after `rise` good health checks, however busy the machine is
        wait_until(lambda: "web/web1 is UP" in haproxy_log(), timeout=30, interval=0.5, what="HAProxy to take web1 back")
    except TimeoutError:
        pass  # the check below says so
    results = load.join()
    log = haproxy_log()
    result.check("HAProxy took web1 out and back in", "web/web1 is DOWN" in log and "web/web1 is UP" in log,
                 f"{log.count('web/web1 is DOWN')} down, {log.count('web/web1 is UP')} up")
    _finish(chaos, result, load, results)
    return result


def pgbouncer_restarted(chaos: Chaos) -> ScenarioResult:
    """PgBouncer SIGKILLed under load and started again 3 s later (every pooled connection cut)."""
    stack: ClusterStack = chaos.stack
    result = ScenarioResult(4, "PgBouncer killed and restarted (3 s down)")
    _slow_primaries(chaos, on=True)
    load = _load(chaos, "pgbouncer")
    try:
        time.sleep(6)
        stack.processes["pgbouncer"].kill()
        print(f"    PgBouncer killed at t={load.elapsed():.1f}s", flush=True)
        time.sleep(3)
        stack.processes["pgbouncer"].start()
        print(f"    PgBouncer started at t={load.elapsed():.1f}s", flush=True)
        results = load.join()
    finally:
        _slow_primaries(chaos, on=False)
    _finish(chaos, result, load, results)
    return result
