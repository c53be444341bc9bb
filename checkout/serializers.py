"""How an order is shown to API clients (shared by the API and the idempotency replay)."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers

from checkout.models import Order, OrderLine
from money.amounts import amount_text


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

    def to_representation(self, instance: Order) -> dict:
        """Amounts with exactly the currency's decimals ("4500" JPY, "19.00" BRL, "1.234" KWD),
        not the column's three."""
        data = super().to_representation(instance)
        data["total"] = amount_text(instance.total, instance.currency)
        for line, shown in zip(instance.lines.all(), data["lines"], strict=True):
            shown["unit_price"] = amount_text(line.unit_price, instance.currency)
            shown["line_total"] = amount_text(line.line_total, instance.currency)
        return data


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
        "total": amount_text(order.total, order.currency),
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
                "unit_price": amount_text(line.unit_price, order.currency),
                "line_total": amount_text(line.line_total, order.currency),
            }
            for line in lines
        ],
        "payment_error": order.payment_error,
        "created_at": _timestamp(order.created_at),
    }


def _timestamp(value) -> str:
    """DRF's DateTimeField: ISO 8601 in the current time zone, UTC written as Z."""
    text = value.astimezone(timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
