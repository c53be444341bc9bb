"""2. A Celery worker SIGKILLed mid-run three times (each time with a vendor call in flight)."""

from __future__ import annotations

import time

from chaos.scenarios.common import Chaos, ScenarioResult, all_recipients, committed, record_inbox
from harness.processes import wait_until

RATE, SECONDS = 5.0, 30.0
KILLS = ((6.0, "worker-a"), (14.0, "worker-b"), (22.0, "worker-a"))
# Vendor latency that keeps sends in flight long enough to be killed mid-call (below the timeout).
VENDOR_LATENCY_MS = 300


def run(chaos: Chaos) -> ScenarioResult:
    from notifications.models import DeliveryAttempt

    result = ScenarioResult(2, "worker SIGKILLed mid-run x3")
    sandbox = chaos.stack.sandbox
    for instance in ("smtp-primary", "sms-primary"):
        sandbox.set_faults(instance, latency_ms=VENDOR_LATENCY_MS)
    load = chaos.load("kill", rate=RATE, seconds=SECONDS)
    mid_call = 0
    try:
        for at, name in KILLS:
            time.sleep(max(0.0, at - load.elapsed()))
            try:
                wait_until(lambda: DeliveryAttempt.objects.filter(outcome="").exists(), timeout=3, interval=0.05,
                           what="a vendor call in flight")
                mid_call += 1
            except TimeoutError:
                pass
            chaos.stack.processes[name].kill()
            print(f"    SIGKILL {name} at t={load.elapsed():.1f}s", flush=True)
            chaos.stack.worker_start(name)
            chaos.stack.worker_wait_ready(name)
    finally:
        results = load.join()
        for instance in ("smtp-primary", "sms-primary"):
            sandbox.clear_faults(instance)
    result.record_load(results)
    result.check("three kills, each with a vendor call in flight", mid_call == len(KILLS), f"{mid_call} of {len(KILLS)} mid-call")
    result.check("every checkout answered 201", all(r.status == 201 for r in results), f"statuses {result.statuses}")
    count = chaos.wait_delivered(committed(all_recipients(results)), timeout=120)
    # A killed call's outcome is unknown: the sweeper's resend asks Twilio first (an SMS it holds
    # is not sent again); an email is sent again, and flagged if it is delivered.
    record_inbox(result, count)
    addresses = [r.email for r in all_recipients(results)] + [r.phone for r in all_recipients(results)]
    orphans = DeliveryAttempt.objects.filter(
        notification__recipient__in=addresses, error__startswith="Worker lost"
    ).count()
    found = DeliveryAttempt.objects.filter(
        notification__recipient__in=addresses, error__startswith="Outcome was unknown; the vendor's message list"
    ).count()
    result.note(f"{orphans} killed calls closed as 'worker lost, outcome unknown' and sent again; "
                f"{found} unknown outcomes found at Twilio by a lookup and not sent again")
    return result
