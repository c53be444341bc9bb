"""How an order is shown to API clients (shared by the API and the idempotency replay)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.utils import timezone
from rest_framework import serializers

from checkout.models import Order, OrderLine

_CENTS = Decimal("0.01")


class OrderLineOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = OrderLine
        fields = ["sku", "name", "quantity", "unit_price", "line_total"]


class CustomerOutputSerializer(serializers.Serializer):
    name = serializers.CharField(source="customer_name")
    email = serializers.EmailField(source="customer_email")
    phone = serializers.CharField(source="customer_phone")
    locale = serializers.CharField(source="customer_locale")


class OrderOutputSerializer(serializers.ModelSerializer):
    customer = CustomerOutputSerializer(source="*")
    lines = OrderLineOutputSerializer(many=True)

    class Meta:
        model = Order
        fields = ["id", "status", "currency", "total", "customer", "lines", "payment_error", "created_at"]


def order_representation(order: Order, lines: list[OrderLine] | None = None) -> dict:
    """The order as JSON-ready data, exactly as OrderOutputSerializer shows it (a test holds
    them equal); pass `lines` to avoid a query when they are at hand.

    Written out by hand because it runs on every checkout: a ModelSerializer builds its fields
    anew for every instance, which cost a fifth of the web's CPU per checkout.
    """
    if lines is None:
        lines = list(order.lines.all())
    return {
        "id": str(order.id),
        "status": order.status,
        "currency": order.currency,
        "total": _amount(order.total),
        "customer": {
            "name": order.customer_name,
            "email": order.customer_email,
            "phone": order.customer_phone,
            "locale": order.customer_locale,
        },
        "lines": [
            {
                "sku": line.sku,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": _amount(line.unit_price),
                "line_total": _amount(line.line_total),
            }
            for line in lines
        ],
        "payment_error": order.payment_error,
        "created_at": _timestamp(order.created_at),
    }


def _amount(value: Decimal) -> str:
    """DRF's DecimalField with two decimal places (coerced to a string)."""
    return f"{Decimal(value).quantize(_CENTS, rounding=ROUND_HALF_UP):f}"


def _timestamp(value) -> str:
    """DRF's DateTimeField: ISO 8601 in the current time zone, UTC written as Z."""
    text = value.astimezone(timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
