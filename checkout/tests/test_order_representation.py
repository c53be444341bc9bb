"""The checkout's hand-written order representation says exactly what OrderOutputSerializer
(the serializer the OpenAPI schema and the list/detail endpoints use) says."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import override_settings

from checkout.models import ApiClient, Order, OrderLine, OrderStatus
from checkout.serializers import OrderOutputSerializer, order_representation


def _order(
    client: ApiClient, *, status: str, error: str = "", currency: str = "EUR", lines: list[tuple[str, int, str]]
) -> Order:
    total = sum((Decimal(price) * quantity for _, quantity, price in lines), Decimal("0"))
    order = Order.objects.create(
        client=client, status=status, currency=currency, total=total, customer_name="Zoë <b>",
        customer_email="zoe@example.com", customer_phone="+447911123456", customer_locale="pt-BR", payment_error=error,
    )
    for sku, quantity, price in lines:
        OrderLine.objects.create(order=order, sku=sku, name=f"name {sku}", quantity=quantity, unit_price=Decimal(price),
                                 line_total=Decimal(price) * quantity)
    return order


@pytest.mark.django_db
@pytest.mark.parametrize("time_zone", ["UTC", "America/Sao_Paulo"])
def test_it_matches_the_serializer_field_for_field(api_client_with_key, time_zone: str) -> None:
    client, _ = api_client_with_key
    orders = [
        _order(client, status=OrderStatus.PAID, currency="JPY", lines=[("A", 3, "1000"), ("B", 1, "5")]),
        _order(client, status=OrderStatus.PAID, currency="KWD", lines=[("A", 3, "1.234"), ("B", 1, "0.005")]),
        _order(client, status=OrderStatus.PAYMENT_FAILED, error="Card declined.", lines=[("C", 10_000, "99999.99")]),
    ]
    with override_settings(TIME_ZONE=time_zone):
        for order in orders:
            order.refresh_from_db()
            lines = list(order.lines.order_by("id"))
            order._prefetched_objects_cache = {"lines": lines}
            expected = dict(OrderOutputSerializer(order).data)

            assert order_representation(order, lines) == expected
            assert order_representation(order, lines)["total"] == expected["total"] != ""


@pytest.mark.django_db
def test_it_writes_utc_as_z_and_keeps_two_decimals(api_client_with_key) -> None:
    client, _ = api_client_with_key
    order = _order(client, status=OrderStatus.PAID, lines=[("A", 2, "19.9")])
    order.created_at = datetime(2026, 12, 1, 20, 0, 0, 123456, tzinfo=UTC)

    shown = order_representation(order, list(order.lines.all()))

    assert shown["created_at"] == "2026-12-01T20:00:00.123456Z"
    assert shown["total"] == "39.80"
    assert shown["lines"][0]["unit_price"] == "19.90"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("currency", "price", "total"), [("JPY", "4500", "9000"), ("BRL", "9.5", "19.00"), ("KWD", "1.234", "2.468")]
)
def test_amounts_show_exactly_the_currency_minor_units(api_client_with_key, currency: str, price: str, total: str) -> None:
    client, _ = api_client_with_key
    order = _order(client, status=OrderStatus.PAID, currency=currency, lines=[("A", 2, price)])
    order.refresh_from_db()

    shown = order_representation(order)

    assert shown["total"] == total
    assert order.total == Decimal(total)
