"""Personal data in the checkout's tables: erasing one person (the `erase_personal_data`
command) and expiring customers' details after PERSONAL_DATA_RETENTION_DAYS (beat).

Orders stay (totals, statuses, times and lines are the shop's records) with the customer's
name, email and phone blanked; the stored answers to Idempotency-Keys that quote the
customer are blanked the same way. `notifications.retention.person_erase` does the rest.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from checkout.models import IdempotencyRecord, Order

logger = logging.getLogger(__name__)

_BLANK_CUSTOMER = {"name": "", "email": "", "phone": ""}


def orders_erase(*, email: str = "", phone: str = "") -> dict[str, int]:
    """Blank the customer of every order placed with `email` (any case) or `phone`, and of the
    stored answers that quote them. Returns counts; logs them (never the address)."""
    if not (email or phone):
        raise ValueError("orders_erase needs an email address or a phone number")
    match, quoted = Q(pk__in=[]), Q(pk__in=[])
    for path in ("customer", "order__customer"):  # a 201's body, a 402's body
        if email:
            quoted |= Q(**{f"response_body__{path}__email__iexact": email})
        if phone:
            quoted |= Q(**{f"response_body__{path}__phone": phone})
    if email:
        match |= Q(customer_email__iexact=email)
    if phone:
        match |= Q(customer_phone=phone)
    with transaction.atomic():
        orders = Order.objects.filter(match).update(customer_name="", customer_email="", customer_phone="")
        records = list(IdempotencyRecord.objects.select_for_update().filter(quoted))
        for record in records:
            record.response_body = _body_without_customer(record.response_body)
        IdempotencyRecord.objects.bulk_update(records, ["response_body"])
    counts = {"orders": orders, "idempotency_records": len(records)}
    logger.info("orders erased", extra=counts)
    return counts


def orders_expire() -> int:
    """Blank the customer of orders placed more than PERSONAL_DATA_RETENTION_DAYS ago (the
    same period as notifications' content and addresses); returns how many. Idempotent."""
    cutoff = timezone.now() - timedelta(days=settings.PERSONAL_DATA_RETENTION_DAYS)
    expired = (
        Order.objects.filter(created_at__lt=cutoff)
        .exclude(customer_name="", customer_email="", customer_phone="")
        .update(customer_name="", customer_email="", customer_phone="")
    )
    logger.info("orders' customer details expired", extra={"orders": expired, "cutoff": cutoff.isoformat()})
    return expired


def _body_without_customer(body: dict[str, Any]) -> dict[str, Any]:
    for holder in (body, body.get("order") or {}):
        if isinstance(holder.get("customer"), dict):
            holder["customer"] = {**holder["customer"], **_BLANK_CUSTOMER}
    return body
