"""One breaker per vendor across worker hosts: sms-primary fails every call for 12 s under load.

The breaker lives in Redis, so however many hosts send, the circuit opens once (one
`closed -> open` in all the worker hosts' logs together), and each half-open period lets
`breaker_half_open_trials` calls through in total, not per host or per process. The trial
calls are counted from the delivery attempts that reached the vendor after the circuit first
opened, and checked against the number of half-open periods the logs show.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from chaos.scenarios.common import Chaos, ScenarioResult, all_recipients, committed, record_inbox
from cluster.load import RetryingLoadRun
from cluster.stack import ClusterStack

VENDOR = "sms-primary"
RATE, SECONDS = 4.0, 24.0
FAILING_FROM, FAILING_FOR = 4.0, 12.0


def _transitions(stack: ClusterStack, since: float) -> dict[str, list[tuple[str, str, str]]]:
    """(logged at, from, to) transitions of VENDOR's circuit logged by each worker host, in files
    written since `since` (epoch seconds)."""
    pattern = re.compile(rf"^(\S+ \S+) .*circuit {re.escape(VENDOR)}: (\w+) -> (\w+)", re.MULTILINE)
    found: dict[str, list[tuple[str, str, str]]] = {}
    for path in sorted(stack.log_dir.glob("worker-*.log")):
        if path.stat().st_mtime < since:
            continue
        host = path.name.split("-")[1]
        found.setdefault(host, []).extend(pattern.findall(path.read_text(errors="replace")))
    return found


def breaker_shared(chaos: Chaos) -> ScenarioResult:
    from notifications.models import AttemptOutcome, DeliveryAttempt, Vendor

    stack: ClusterStack = chaos.stack
    result = ScenarioResult(5, f"{VENDOR} failing 12 s: one breaker for all worker hosts")
    vendor = Vendor.objects.get(name=VENDOR)
    before = {host: len(pairs) for host, pairs in _transitions(stack, 0).items()}
    load = RetryingLoadRun(base_url=stack.base_url, api_key=chaos.api_key, tag="breaker", rate=RATE, seconds=SECONDS).start()
    try:
        time.sleep(FAILING_FROM)
        failing_since = datetime.now(UTC)
        stack.sandbox.set_faults(VENDOR, failure_rate=1.0, error_status=503)
        print(f"    {VENDOR} failing every call at t={load.elapsed():.1f}s", flush=True)
        time.sleep(FAILING_FOR)
        stack.sandbox.clear_faults(VENDOR)
        failing_until = datetime.now(UTC)
        print(f"    {VENDOR} healthy at t={load.elapsed():.1f}s", flush=True)
        results = load.join()
    finally:
        stack.sandbox.clear_faults(VENDOR)
    time.sleep(4)  # the last open wait ends and a trial closes the circuit
    result.record_load(results)
    result.check("every checkout answered 201", all(r.status == 201 for r in results), f"statuses {result.statuses}")

    logged = _transitions(stack, 0)
    new = {host: pairs[before.get(host, 0):] for host, pairs in logged.items()}
    # Every host's transitions in the order they happened (the log lines' timestamps).
    pairs = [(old, new_state) for _at, old, new_state in sorted(t for host_t in new.values() for t in host_t)]
    opened = [host for host, host_t in new.items() for _at, *pair in host_t if tuple(pair) == ("closed", "open")]
    half_opens = sum(1 for pair in pairs if pair == ("open", "half_open"))
    result.check("the circuit opened once for all worker hosts", len(opened) == 1,
                 f"closed -> open logged {len(opened)} time(s) (by {', '.join(opened) or 'nobody'})")
    result.note("transitions by host: " + "; ".join(f"{host}: {len(p)}" for host, p in sorted(new.items())))

    first_open = _first_open_time(failing_since, failing_until, vendor)
    trials = DeliveryAttempt.objects.filter(
        vendor=vendor, started_at__gt=first_open, started_at__lt=failing_until,
    ).exclude(outcome=AttemptOutcome.SKIPPED_CIRCUIT_OPEN).count()
    budget = half_opens * vendor.breaker_half_open_trials
    result.check("half-open trial calls stayed within the budget across hosts", trials <= budget,
                 f"{trials} calls reached {VENDOR} while its circuit was open or half-open; "
                 f"{half_opens} half-open periods x {vendor.breaker_half_open_trials} trials = {budget}")
    skipped = DeliveryAttempt.objects.filter(vendor=vendor, outcome=AttemptOutcome.SKIPPED_CIRCUIT_OPEN,
                                             started_at__gt=failing_since).count()
    result.check("the open circuit turned sends away", skipped > 0, f"{skipped} sends skipped {VENDOR}")
    result.check("the circuit closed again once the vendor recovered", pairs and pairs[-1][1] == "closed",
                 f"last transition {pairs[-1] if pairs else None}")
    count = chaos.wait_delivered(committed(all_recipients(results)), timeout=90)
    record_inbox(result, count)
    return result


def _first_open_time(since: datetime, until: datetime, vendor) -> datetime:
    """When the circuit first turned sends away: the first skip in the failing window."""
    from notifications.models import AttemptOutcome, DeliveryAttempt

    first = (DeliveryAttempt.objects.filter(vendor=vendor, outcome=AttemptOutcome.SKIPPED_CIRCUIT_OPEN,
                                            started_at__gte=since, started_at__lt=until)
             .order_by("started_at").values_list("started_at", flat=True).first())
    return first or until
