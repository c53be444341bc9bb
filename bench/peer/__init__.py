"""The peer: the checkout a Django team usually writes, for the benchmark to compare Beacon with.

A DRF view saves the order and, in `transaction.on_commit`, calls `send_order_notifications.delay`;
a Celery task with default settings renders a Django template, calls `send_mail` (SMTP) and the
official `twilio` client, and retries with `autoretry_for`. No outbox, no idempotency, no breaker:
what it loses or sends twice when the broker or a worker fails is what the benchmark counts.

Its own Django project (settings `bench.peer.settings`), database and Redis; started by
`bench/peer/stack.py`. Nothing here imports Beacon.
"""
