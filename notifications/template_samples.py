"""Sample data for templates: what the admin previews with, and what a save is rendered with
(under the render budget) before it is accepted."""

from __future__ import annotations

from typing import Any


def sample_payload(event_type: str) -> dict[str, Any]:
    """Sample template data shaped like checkout.services._trigger_payload, per event type."""
    lines = [
        {"sku": "MUG-01", "name": "Beacon mug", "quantity": 2, "unit_price": "12.50", "line_total": "25.00"},
        {"sku": "TEE-M", "name": "T-shirt (M)", "quantity": 1, "unit_price": "22.30", "line_total": "22.30"},
    ]
    payload = {
        "order_id": "3f2b8c1e-5d4a-4b7e-9c61-0a1b2c3d4e5f",
        "order_ref": "3F2B8C1E",
        "status": "paid",
        "customer_name": "Ana Silva",
        "currency": "EUR",
        "total": "47.30",
        "payment_error": "",
        "lines": lines,
    }
    if event_type == "payment_failed":
        payload.update(status="payment_failed", payment_error="Card declined: insufficient funds.")
    return payload
