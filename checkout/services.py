"""Checkout: charge, then store the order and its notification trigger in one statement."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction

from checkout.exceptions import ApplicationError
from checkout.idempotency import (
    StoredResponse,
    idempotency_abandon,
    idempotency_begin,
    idempotency_complete,
)
from checkout.models import ApiClient, IdempotencyRecord, Order, OrderLine, OrderStatus
from checkout.payments import PaymentDeclined, PaymentGatewayError, payment_gateway
from checkout.serializers import order_representation
from checkout.statements import order_insert_with
from money.amounts import amount_text
from notifications.events import ORDER_CONFIRMED, PAYMENT_FAILED, OrderEventPayload
from notifications.services import trigger_publish

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Customer:
    name: str
    email: str
    phone: str
    locale: str


@dataclass(frozen=True)
class LineItem:
    sku: str
    name: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class CheckoutOutcome:
    status: int
    body: dict[str, Any]
    replayed: bool = False


def checkout_create(
    *,
    client: ApiClient,
    customer: Customer,
    lines: list[LineItem],
    currency: str,
    payment_token: str,
    idempotency_key: str | None = None,
    fingerprint: str = "",
) -> CheckoutOutcome:
    """Charge the customer and record the order; never waits on the notification machinery.

    1. With an idempotency key: claim it, or return the stored answer (replay).
    2. Charge through the gateway (outside any transaction: no lock held over the network).
    3. In one statement: the order, its lines and its NotificationTrigger (with an idempotency
       key, in one transaction with the stored answer).
    A declined payment still records the order (status payment_failed) and answers 402.
    A gateway failure records nothing, frees the key and raises ApplicationError 502.
    """
    record: IdempotencyRecord | None = None
    if idempotency_key:
        claimed = idempotency_begin(client=client, key=idempotency_key, fingerprint=fingerprint)
        if isinstance(claimed, StoredResponse):
            return CheckoutOutcome(status=claimed.status, body=claimed.body, replayed=True)
        record = claimed
    try:
        return _charge_and_record(client, customer, lines, currency, payment_token, idempotency_key, record)
    except BaseException:
        if record is not None:
            idempotency_abandon(record=record)
        raise


def _charge_and_record(
    client: ApiClient,
    customer: Customer,
    lines: list[LineItem],
    currency: str,
    payment_token: str,
    idempotency_key: str | None,
    record: IdempotencyRecord | None,
) -> CheckoutOutcome:
    started = time.perf_counter()
    total = sum((line.unit_price * line.quantity for line in lines), Decimal("0"))
    payment_reference, payment_error, payment_error_code = "", "", ""
    try:
        payment = payment_gateway().charge(
            amount=total, currency=currency, token=payment_token, idempotency_key=idempotency_key or ""
        )
        payment_reference = payment.reference
    except PaymentDeclined as exc:
        payment_error, payment_error_code = str(exc), exc.code
    except PaymentGatewayError as exc:
        logger.warning("payment gateway error: %s", exc)
        raise ApplicationError(str(exc), code="payment_gateway_error", status_code=502) from exc

    paid = not payment_error
    order = Order(
        client=client,
        status=OrderStatus.PAID if paid else OrderStatus.PAYMENT_FAILED,
        currency=currency,
        total=total,
        customer_name=customer.name,
        customer_email=customer.email,
        customer_phone=customer.phone,
        customer_locale=customer.locale,
        payment_reference=payment_reference,
        payment_error=payment_error,
    )
    order_lines = [
        OrderLine(
            order=order,
            sku=line.sku,
            name=line.name,
            quantity=line.quantity,
            unit_price=line.unit_price,
            line_total=line.unit_price * line.quantity,
        )
        for line in lines
    ]
    # The order, its lines and its trigger go in one statement (atomic by itself); only the
    # stored answer to an Idempotency-Key needs a transaction around it.
    with transaction.atomic() if record is not None else nullcontext():
        trigger_publish(
            event_type=ORDER_CONFIRMED if paid else PAYMENT_FAILED,
            locale=customer.locale,
            payload=_trigger_payload(order, order_lines, payment_error_code=payment_error_code),
            recipients={"email": customer.email, "sms": customer.phone},
            subject_ref=f"order:{order.pk}",
            insert_with=lambda trigger_part: order_insert_with(order=order, lines=order_lines, final=trigger_part),
        )
        body = order_representation(order, order_lines)
        if paid:
            status = 201
        else:
            body = {"error": {"code": "payment_declined", "message": payment_error}, "order": body}
            status = 402
        if record is not None:
            idempotency_complete(record=record, status=status, body=body)
    logger.info(
        "checkout %s",
        order.status,
        extra={
            "order_id": str(order.pk),
            "client_id": client.pk,
            "total": str(total),
            "currency": currency,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return CheckoutOutcome(status=status, body=body)


def _trigger_payload(order: Order, lines: list[OrderLine], *, payment_error_code: str) -> OrderEventPayload:
    """Everything the notification templates may use; plain JSON, no model instances.

    Amounts are text with the currency's decimals, for the templates' `money` filter; a
    declined payment is a code (`payment_error_code`) that each locale's template words, never
    the gateway's English sentence.
    """
    return {
        "order_id": str(order.pk),
        "order_ref": str(order.pk)[:8].upper(),
        "status": order.status,
        "customer_name": order.customer_name,
        "currency": order.currency,
        "total": amount_text(order.total, order.currency),
        "payment_error_code": payment_error_code,
        "lines": [
            {
                "sku": line.sku,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": amount_text(line.unit_price, order.currency),
                "line_total": amount_text(line.line_total, order.currency),
            }
            for line in lines
        ],
    }
