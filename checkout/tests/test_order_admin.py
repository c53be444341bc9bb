"""Orders in the operator's admin show amounts as their customer read them."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

NBSP = "\xa0"


@pytest.mark.django_db
def test_order_list_and_page_show_amounts_in_the_customer_locale(admin_client: Client, api: APIClient) -> None:
    order = api.post(
        "/api/v1/checkouts/",
        {
            "customer": {"name": "Ana", "email": "ana@example.com", "phone": "+5511987654321", "locale": "pt-BR"},
            "lines": [{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": "4999.5"}],
            "currency": "BRL",
            "payment_token": "tok_ok",
        },
        format="json",
    ).json()

    listing = admin_client.get("/admin/checkout/order/").content.decode()
    page = admin_client.get(f"/admin/checkout/order/{order['id']}/change/").content.decode()

    assert f"R${NBSP}9.999,00" in listing
    assert f"R${NBSP}9.999,00" in page  # the total and the line total
    assert f"R${NBSP}4.999,50" in page  # the unit price
    assert "9999.000" not in page
