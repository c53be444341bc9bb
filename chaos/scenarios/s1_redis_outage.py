"""1. Redis (broker, cache, breakers) stopped for 20 s, then started again, empty."""

from __future__ import annotations

import time

from chaos.scenarios.common import Chaos, ScenarioResult, all_recipients, committed, record_inbox

OUTAGE_SECONDS = 20.0
RATE, SECONDS, OUTAGE_AT = 5.0, 32.0, 5.0


def run(chaos: Chaos) -> ScenarioResult:
    result = ScenarioResult(1, "Redis stopped 20 s, then started")
    load = chaos.load("redis", rate=RATE, seconds=SECONDS)
    time.sleep(OUTAGE_AT)
    chaos.stack.redis.stop()
    print(f"    redis stopped at t={load.elapsed():.1f}s", flush=True)
    time.sleep(OUTAGE_SECONDS)
    chaos.stack.redis.start()
    print(f"    redis started again (empty) at t={load.elapsed():.1f}s", flush=True)
    results = load.join()
    result.record_load(results)
    during = [r for r in results if OUTAGE_AT <= r.started < OUTAGE_AT + OUTAGE_SECONDS]
    result.check("every checkout answered 201", all(r.status == 201 for r in results), f"statuses {result.statuses}")
    result.check("checkouts kept coming during the outage", len(during) >= RATE * OUTAGE_SECONDS * 0.9, f"{len(during)} during")
    result.check("checkout latency bounded (< 2 s)", result.max_latency_ms < 2000, f"max {result.max_latency_ms:.0f} ms")
    count = chaos.wait_delivered(committed(all_recipients(results)), timeout=120)
    record_inbox(result, count)
    return result
