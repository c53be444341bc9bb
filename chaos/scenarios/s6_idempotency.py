"""6. Fifty concurrent POSTs with the same Idempotency-Key and body."""

from __future__ import annotations

import uuid
from collections import Counter

from chaos.load import checkout_body, checkout_post, recipient_new, run_concurrently
from chaos.scenarios.common import Chaos, ScenarioResult, record_inbox

CONCURRENT = 50


def run(chaos: Chaos) -> ScenarioResult:
    import time

    from checkout.models import Order
    from notifications.models import NotificationTrigger

    result = ScenarioResult(6, "50 concurrent POSTs, one Idempotency-Key")
    recipient = recipient_new("idem")
    body, key = checkout_body(recipient), f"chaos-{uuid.uuid4()}"

    def post() -> tuple[int, object, dict, float]:
        started = time.monotonic()
        status, answer, headers = checkout_post(chaos.stack.base_url, chaos.api_key, body, idempotency_key=key)
        return status, answer, headers, time.monotonic() - started

    answers = run_concurrently(CONCURRENT, post)
    replay = post()
    statuses = Counter(str(a[0]) for a in answers)
    result.checkouts = CONCURRENT
    result.statuses = dict(sorted(statuses.items()))
    result.max_latency_ms = max(a[3] for a in answers) * 1000
    errors = [a[1] for a in answers if a[0] >= 500]
    result.check("no 5xx; each answer is 201 (first or replay) or 409 (in flight)", set(statuses) <= {"201", "409"},
                 f"statuses {result.statuses}" + (f"; e.g. {errors[0]}" if errors else ""))
    order_ids = {a[1]["id"] for a in answers if a[0] == 201}
    result.check("every 201 names the same order", len(order_ids) == 1, f"{len(order_ids)} distinct orders")
    orders = list(Order.objects.filter(customer_email=recipient.email))
    result.check("one order", len(orders) == 1, f"{len(orders)} orders")
    triggers = NotificationTrigger.objects.filter(subject_ref__in=[f"order:{o.pk}" for o in orders]).count()
    result.check("one notification trigger", triggers == 1, f"{triggers} triggers")
    result.check("a later retry replays the answer", replay[0] == 201 and replay[2].get("Idempotent-Replayed") == "true"
                 and replay[1].get("id") in order_ids, f"{replay[0]}")
    record_inbox(result, chaos.wait_delivered([recipient], timeout=60))
    return result
