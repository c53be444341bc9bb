"""Sample data for templates: what the admin previews with, and what a save is rendered with
(under the render budget) before it is accepted."""

from __future__ import annotations

from typing import Any

from money.currencies import currency_minor_units
from money.formatting import locale_currency


def sample_payload(event_type: str, locale: str = "en") -> dict[str, Any]:
    """Sample template data shaped like checkout.services._trigger_payload, per event type, in
    the currency of the locale's country when it has cents like the sample's (BRL for pt-BR)."""
    currency = locale_currency(locale)
    if currency is None or currency_minor_units(currency) != 2:
        currency = "EUR"
    lines = [
        {"sku": "MUG-01", "name": "Beacon mug", "quantity": 2, "unit_price": "12.50", "line_total": "25.00"},
        {"sku": "TEE-M", "name": "T-shirt (M)", "quantity": 1, "unit_price": "22.30", "line_total": "22.30"},
    ]
    payload = {
        "order_id": "3f2b8c1e-5d4a-4b7e-9c61-0a1b2c3d4e5f",
        "order_ref": "3F2B8C1E",
        "status": "paid",
        "customer_name": "Ana Silva",
        "currency": currency,
        "total": "47.30",
        "payment_error_code": "",
        "lines": lines,
    }
    if event_type == "payment_failed":
        payload.update(status="payment_failed", payment_error_code="card_declined")
    return payload
