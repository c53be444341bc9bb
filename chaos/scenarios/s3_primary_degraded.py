"""3. Each channel's primary vendor in outage, then slow (above its timeout), then failing 50%."""

from __future__ import annotations

import threading
import time

from chaos.scenarios.common import CHANNEL_INSTANCES, Chaos, ScenarioResult, all_recipients, committed, record_inbox
from chaos.stack import VENDOR_TIMEOUT_SECONDS

RATE = 4.0
# (starts at second, phase, faults on each primary); the load runs through all of them.
PHASES = (
    (0.0, "healthy", {}),
    (4.0, "outage", {"outage": True}),
    (14.0, "slow", {"outage": False, "latency_ms": int(VENDOR_TIMEOUT_SECONDS * 1000 * 1.5)}),
    (24.0, "failing 50%", {"latency_ms": 0, "failure_rate": 0.5, "error_status": 503}),
    (34.0, "recovered", None),
)
SECONDS = 46.0
PRIMARIES = ("smtp-primary", "sms-primary")


class CircuitWatch:
    """Polls the primaries' breakers (VendorCircuit.snapshot, i.e. Redis) and keeps each change."""

    def __init__(self, started: float) -> None:
        from notifications.models import Vendor
        from notifications.routing import vendor_circuit

        self.circuits = {name: vendor_circuit(Vendor.objects.get(name=name)) for name in PRIMARIES}
        self.started = started
        self.changes: dict[str, list[tuple[float, str]]] = {name: [] for name in PRIMARIES}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> CircuitWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            for name, circuit in self.circuits.items():
                try:
                    state = str(circuit.snapshot().state)
                except Exception:  # noqa: S112 - a missed poll is retried 0.1 s later
                    continue
                history = self.changes[name]
                if not history or history[-1][1] != state:
                    history.append((round(time.monotonic() - self.started, 1), state))

    def seen(self, name: str, state: str, *, between: tuple[float, float]) -> bool:
        """Was `state` in effect at some moment in `between` (seconds since the start)?"""
        history = self.changes[name]
        for index, (at, current) in enumerate(history):
            until = history[index + 1][0] if index + 1 < len(history) else float("inf")
            if current == state and at < between[1] and until > between[0]:
                return True
        return False


def run(chaos: Chaos) -> ScenarioResult:
    from notifications.models import AttemptOutcome, DeliveryAttempt

    result = ScenarioResult(3, "primaries: outage, slow, 50% failing")
    sandbox = chaos.stack.sandbox
    load = chaos.load("degraded", rate=RATE, seconds=SECONDS)
    watch = CircuitWatch(load.started).start()
    try:
        for at, phase, faults in PHASES:
            time.sleep(max(0.0, at - load.elapsed()))
            for name in PRIMARIES:
                if faults is None:
                    sandbox.clear_faults(name)
                elif faults:
                    sandbox.set_faults(name, **faults)
            print(f"    primaries {phase} at t={load.elapsed():.1f}s", flush=True)
        results = load.join()
    finally:
        for name in PRIMARIES:
            sandbox.clear_faults(name)
    time.sleep(3)
    watch.stop()
    result.record_load(results)
    result.check("every checkout answered 201", all(r.status == 201 for r in results), f"statuses {result.statuses}")

    recipients = committed(all_recipients(results))
    count = chaos.wait_delivered(recipients, timeout=120)
    record_inbox(result, count)

    by_phase = {phase: [] for _, phase, _ in PHASES}
    starts = [(at, phase) for at, phase, _ in PHASES]
    for r in results:
        phase = [p for at, p in starts if r.started >= at][-1]
        by_phase[phase].append(r.recipient)
    for channel, (primary, fallback) in CHANNEL_INSTANCES.items():
        outage = committed(by_phase["outage"][2:])  # the first half-second may still reach the primary
        got = chaos.inbox(outage, (channel,))
        via_fallback = sum(1 for found in got.where.values() if found and set(found) == {fallback})
        result.check(f"{channel}: primary in outage -> all delivered via {fallback}", via_fallback == got.expected,
                     f"{via_fallback}/{got.expected}")
        slow = chaos.inbox(committed(by_phase["slow"]), (channel,))
        via_fallback = sum(1 for found in slow.where.values() if fallback in found)
        result.check(f"{channel}: primary slow -> delivered via {fallback}", via_fallback >= slow.expected * 0.5,
                     f"{via_fallback}/{slow.expected} via fallback")
        result.check(f"{channel}: circuit of {primary} opened in the outage", watch.seen(primary, "open", between=(4, 14)))
        result.check(f"{channel}: circuit of {primary} opened when it was slow", watch.seen(primary, "open", between=(15, 24)))
        result.check(f"{channel}: circuit of {primary} half-open (trial calls) after its open wait",
                     any(state == "half_open" for _, state in watch.changes[primary]))
        final = watch.changes[primary][-1][1] if watch.changes[primary] else "?"
        result.check(f"{channel}: circuit of {primary} closed again after recovery",
                     watch.seen(primary, "closed", between=(36, SECONDS + 3)) and final == "closed", f"final {final}")
        result.note(f"{primary} circuit: " + " ".join(f"{at}s:{state}" for at, state in watch.changes[primary]))
    skipped = DeliveryAttempt.objects.filter(
        vendor__name__in=PRIMARIES, outcome=AttemptOutcome.SKIPPED_CIRCUIT_OPEN,
        notification__recipient__in=[r.phone for r in recipients] + [r.email for r in recipients],
    ).count()
    result.check("open circuits skipped the primaries (DeliveryAttempt skipped_circuit_open)", skipped > 0, f"{skipped} skips")
    return result
