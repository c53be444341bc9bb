"""5. PostgreSQL unreachable from the web for a moment (through the chaos proxy; the shared
server keeps running for everyone else)."""

from __future__ import annotations

import time

from chaos.scenarios.common import Chaos, ScenarioResult, all_recipients, committed, record_inbox

RATE, SECONDS, CUT_AT, CUT_SECONDS = 5.0, 20.0, 5.0, 5.0
# Requests started this long after the database came back must all succeed again.
RECOVERY_SECONDS = 3.0


def run(chaos: Chaos) -> ScenarioResult:
    from checkout.models import Order, OrderLine
    from notifications.models import NotificationTrigger

    result = ScenarioResult(5, "PostgreSQL unreachable 5 s (web)")
    load = chaos.load("pgdown", rate=RATE, seconds=SECONDS)
    time.sleep(CUT_AT)
    chaos.stack.proxy.cut()
    print(f"    database cut at t={load.elapsed():.1f}s", flush=True)
    time.sleep(CUT_SECONDS)
    chaos.stack.proxy.restore()
    print(f"    database back at t={load.elapsed():.1f}s", flush=True)
    results = load.join()
    result.record_load(results)

    unavailable = [r for r in results if r.status == 503]
    result.check("answers are 201 or 503 only", {r.status for r in results} <= {201, 503}, f"statuses {result.statuses}")
    result.check("the outage was felt (some 503s)", len(unavailable) > 0, f"{len(unavailable)} x 503")
    clear = all(
        isinstance(r.body, dict) and r.body.get("error", {}).get("code") == "database_unavailable"
        and "Traceback" not in str(r.body) and r.headers.get("Retry-After")
        for r in unavailable
    )
    result.check("each 503 is a clear JSON error with Retry-After (no stack trace)", clear,
                 str(unavailable[0].body) if unavailable else "")
    after = [r for r in results if r.started >= CUT_AT + CUT_SECONDS + RECOVERY_SECONDS]
    result.check("recovered by itself", after and all(r.status == 201 for r in after), f"{len(after)} requests after recovery")

    recipients = all_recipients(results)
    orders = list(Order.objects.filter(customer_email__in=[r.email for r in recipients]))
    created = {r.recipient.email for r in results if r.status == 201}
    stored = {order.customer_email for order in orders}
    result.check("every 201 has its order", created <= stored, f"{len(created)} answered 201, {len(stored)} orders stored")
    refs = [f"order:{order.pk}" for order in orders]
    triggers = NotificationTrigger.objects.filter(subject_ref__in=refs).count()
    lines = OrderLine.objects.filter(order__in=orders).count()
    result.check("nothing half-written: one trigger and two lines per order",
                 triggers == len(orders) and lines == 2 * len(orders),
                 f"{len(orders)} orders, {triggers} triggers, {lines} lines")
    if len(stored) > len(created):
        result.note(f"{len(stored) - len(created)} checkouts committed although their answer was 503 "
                    "(the connection died after COMMIT); their notifications are counted as expected")
    count = chaos.wait_delivered(committed(recipients), timeout=90)
    record_inbox(result, count)
    return result
