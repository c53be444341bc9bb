from __future__ import annotations

from celery import shared_task

from checkout.idempotency import idempotency_records_purge


@shared_task(name="checkout.tasks.idempotency_records_purge")
def idempotency_records_purge_task() -> int:
    return idempotency_records_purge()
