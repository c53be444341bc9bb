from __future__ import annotations

from celery import shared_task

from checkout.erasure import orders_expire
from checkout.idempotency import idempotency_records_purge


@shared_task(name="checkout.tasks.idempotency_records_purge")
def idempotency_records_purge_task() -> int:
    return idempotency_records_purge()


@shared_task(name="checkout.tasks.orders_expire")
def orders_expire_task() -> int:
    return orders_expire()
