"""Checkout request bodies for any app's tests: a valid checkout and variations of it.

Not a test module: tests import it instead of each other (tests/test_test_modules_stand_alone.py).
"""

from __future__ import annotations

import copy
from typing import Any

CHECKOUTS_URL = "/api/v1/checkouts/"

# A paid checkout of two lines in BRL (total 47.30) for a pt-BR customer with an email and a phone.
# Read it, never change it: checkout_body() gives a copy to change.
VALID_CHECKOUT: dict[str, Any] = {
    "customer": {"name": "Ana Souza", "email": "ana@example.com", "phone": "+5511987654321", "locale": "pt-BR"},
    "lines": [
        {"sku": "TSHIRT-M", "name": "T-shirt", "quantity": 2, "unit_price": "19.90"},
        {"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": "7.50"},
    ],
    "currency": "BRL",
    "payment_token": "tok_ok",
}


def checkout_body(**changes: object) -> dict[str, Any]:
    """A fresh copy of VALID_CHECKOUT with `changes` replacing its top-level fields."""
    data = copy.deepcopy(VALID_CHECKOUT)
    data.update(changes)
    return data
