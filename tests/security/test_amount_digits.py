"""Amounts and quantities in other scripts' digits are refused, not read as numbers.

Python reads "١٢" (Arabic-Indic), "１２" (full-width) and "১২" (Bengali) as 12: an amount an
operator or a fraud filter reads one way could be charged another way, and a string that
passes one validator could compare unequal in another system. Only ASCII 0-9 are amounts.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from checkout.models import Order
from notifications.models import NotificationTrigger

URL = "/api/v1/checkouts/"
ATTACKS = ["١٢", "١٢.٥٠", "１２", "১২", "12.٥", "۱۲"]


def checkout_body(*, unit_price: object = "12.00", quantity: object = 1) -> dict:
    return {
        "customer": {"name": "Ana", "email": "ana@example.com", "phone": "+5511987654321", "locale": "pt-BR"},
        "lines": [{"sku": "MUG", "name": "Mug", "quantity": quantity, "unit_price": unit_price}],
        "currency": "BRL",
        "payment_token": "tok_ok",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("digits", ATTACKS)
def test_a_price_in_non_ascii_digits_is_refused_and_nothing_is_written(api: APIClient, digits: str) -> None:
    response = api.post(URL, checkout_body(unit_price=digits), format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert "ASCII" in error["fields"]["lines"]["0"]["unit_price"][0]
    assert Order.objects.count() == 0
    assert NotificationTrigger.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("digits", ["١٢", "１２", "২"])
def test_a_quantity_in_non_ascii_digits_is_refused(api: APIClient, digits: str) -> None:
    response = api.post(URL, checkout_body(quantity=digits), format="json")

    assert response.status_code == 400, response.content
    assert "quantity" in response.json()["error"]["fields"]["lines"]["0"]
    assert Order.objects.count() == 0


@pytest.mark.django_db
def test_the_same_amount_in_ascii_digits_is_accepted(api: APIClient) -> None:
    response = api.post(URL, checkout_body(unit_price="12", quantity="1"), format="json")

    assert response.status_code == 201, response.content
    assert response.json()["total"] == "12.00"
