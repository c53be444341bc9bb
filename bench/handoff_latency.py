"""How long from a checkout's statement until its dispatch message is in the broker, by hand-off.

    TRIGGER_HANDOFF_VIA=notify python -m bench.handoff_latency [--count 300]
    TRIGGER_HANDOFF_VIA=web python -m bench.handoff_latency

On DATABASE_URL's database (migrated; its undispatched triggers are marked dispatched first, or
the listener's catch-up would queue them) and the broker's `default` queue (emptied): writes a
trigger with the checkout's one-statement path (`trigger_publish(insert_with=...)`), then waits
for the message with BRPOP. With `notify` a trigger listener runs in this process (a worker
hosts it in production); with `web` the publish happens after COMMIT in this process, as in the
web. Prints p50/p90/p99 in milliseconds. Alternate the two modes in one sitting to compare.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import time

import django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    import redis
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from notifications.models import NotificationTrigger
    from notifications.outbox import trigger_publish
    from notifications.row_inserts import rows_insert_before
    from notifications.trigger_listener import TriggerListener

    NotificationTrigger.objects.filter(dispatched_at__isnull=True).update(dispatched_at=timezone.now())
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("default")
    listener = None
    if settings.TRIGGER_HANDOFF_VIA == "notify":
        listener = TriggerListener(dsn=settings.TRIGGER_LISTENER_DATABASE_URL)
        listener.start()
        while not listener.listening:
            time.sleep(0.05)

    def insert_with(statement: tuple[str, list]) -> int:
        sql, params = rows_insert_before([], statement)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]

    latencies = []
    for _ in range(args.count):
        started = time.perf_counter()
        trigger = trigger_publish(event_type="order_confirmed", locale="en", payload={},
                                  recipients={"email": "a@example.com"}, insert_with=insert_with)
        popped = broker.brpop("default", timeout=5)
        if popped is None:
            raise SystemExit("no message within 5 s")
        latencies.append((time.perf_counter() - started) * 1000)
        args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(popped[1])["body"]))
        if args != [trigger.pk]:
            raise SystemExit(f"expected the dispatch of trigger {trigger.pk}, got {args}")
        time.sleep(0.01)
    if listener is not None:
        listener.stop()
    latencies.sort()
    p50, p90, p99 = (latencies[int(len(latencies) * q)] for q in (0.5, 0.9, 0.99))
    print(f"{settings.TRIGGER_HANDOFF_VIA}: statement until the message is in the broker: "
          f"p50 {p50:.2f} p90 {p90:.2f} p99 {p99:.2f} ms (n={len(latencies)})")


if __name__ == "__main__":
    main()
