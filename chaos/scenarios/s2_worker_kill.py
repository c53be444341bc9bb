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
    # Killed calls go back to the same vendor with the same idempotency key (no duplicate); a vendor
    # call that timed out meanwhile (a busy machine) falls under the unknown-outcome policy.
    record_inbox(result, count, allow_flagged_duplicates=True)
    addresses = [r.email for r in all_recipients(results)] + [r.phone for r in all_recipients(results)]
    resent_elsewhere = DeliveryAttempt.objects.filter(
        error__startswith="Worker lost", notification__possible_duplicate=True, notification__recipient__in=addresses
    ).count()
    result.check("no kill made a message go out twice (killed calls resent to the same vendor)", resent_elsewhere == 0,
                 f"{resent_elsewhere} killed calls completed by another vendor")
    addresses = [r.email for r in all_recipients(results)] + [r.phone for r in all_recipients(results)]
    orphans = DeliveryAttempt.objects.filter(error__startswith="Worker lost", notification__recipient__in=addresses).count()
    result.note(f"{orphans} attempts were closed as 'worker lost, outcome unknown' and sent again to the same vendor "
                "(same idempotency key: the vendor keeps one copy)")
    return result
