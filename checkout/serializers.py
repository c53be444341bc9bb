"""How an order is shown to API clients (shared by the API and the idempotency replay)."""

from __future__ import annotations

from rest_framework import serializers

from checkout.models import Order, OrderLine


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
    """The order as JSON-ready data; pass `lines` to avoid a query when they are at hand."""
    if lines is not None:
        order._prefetched_objects_cache = {"lines": lines}
    return dict(OrderOutputSerializer(order).data)
