"""The checkout's events as notifications knows them: their names, the shape of their payload,
its JSON Schema and a sample.

`checkout` imports this module to write its triggers (checkout -> notifications is the allowed
arrow); the overview counts checkouts by these names, and the demo registers these event types
in a database that lost them. Migration 0004 registered the same event types with a frozen copy
of these values (a migration never imports live code).

No code depends on the payload beyond this module: templates read it, and an event type's
schema (in the database, editable in the admin) says what it must hold.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any, TypedDict

ORDER_CONFIRMED = "order_confirmed"
PAYMENT_FAILED = "payment_failed"
# Every checkout writes exactly one trigger, whose event says how it ended: the overview counts
# checkouts by outcome from the triggers, without reading checkout's tables.
CHECKOUT_OUTCOME_BY_EVENT = {ORDER_CONFIRMED: "paid", PAYMENT_FAILED: "payment_failed"}


class OrderLinePayload(TypedDict):
    sku: str
    name: str
    quantity: int
    unit_price: str  # text with the currency's decimals, for the templates' `money` filter
    line_total: str


class OrderEventPayload(TypedDict):
    """What an order's trigger carries: everything its templates may use, plain JSON."""

    order_id: str
    order_ref: str
    status: str
    customer_name: str
    currency: str
    total: str
    payment_error_code: str  # a code each locale's template words (`card_declined`), or ""
    lines: list[OrderLinePayload]


# The fields templates rely on are required, others allowed.
ORDER_PAYLOAD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["order_ref", "customer_name", "currency", "total", "lines"],
    "properties": {
        "order_id": {"type": "string"},
        "order_ref": {"type": "string"},
        "status": {"type": "string"},
        "customer_name": {"type": "string"},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "total": {"type": "string"},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "quantity"],
                "properties": {
                    "sku": {"type": "string"},
                    "name": {"type": "string"},
                    "quantity": {"type": "integer", "minimum": 1},
                    "unit_price": {"type": "string"},
                    "line_total": {"type": "string"},
                },
            },
        },
        "payment_error_code": {"type": "string"},
    },
}

ORDER_SAMPLE_PAYLOAD: OrderEventPayload = {
    "order_id": "3f2b8c1e-5d4a-4b7e-9c61-0a1b2c3d4e5f",
    "order_ref": "3F2B8C1E",
    "status": "paid",
    "customer_name": "Ana Silva",
    "currency": "EUR",
    "total": "47.30",
    "lines": [
        {"sku": "MUG-01", "name": "Beacon mug", "quantity": 2, "unit_price": "12.50", "line_total": "25.00"},
        {"sku": "TEE-M", "name": "T-shirt (M)", "quantity": 1, "unit_price": "22.30", "line_total": "22.30"},
    ],
    "payment_error_code": "",
}


def checkout_event_types() -> list[dict[str, Any]]:
    """The checkout's event types as EventType rows' fields (fresh objects: callers may change them)."""
    declined: OrderEventPayload = {**ORDER_SAMPLE_PAYLOAD, "status": "payment_failed", "payment_error_code": "card_declined"}
    rows = [
        (ORDER_CONFIRMED, "A paid checkout: the order confirmation.", ORDER_SAMPLE_PAYLOAD),
        (PAYMENT_FAILED, "A declined payment at checkout.", declined),
    ]
    return [
        {
            "name": name,
            "description": description,
            "category": "transactional",
            "sample_payload": deepcopy(sample),
            "payload_schema": deepcopy(ORDER_PAYLOAD_SCHEMA),
        }
        for name, description, sample in rows
    ]

