"""The payment gateway interface and the built-in sandbox gateway.

`settings.PAYMENT_GATEWAY` names the class the checkout charges through (docs/payments.md
describes what a real provider's class implements). There is no silent default outside
development and tests: config/settings.py refuses to start without it when DEBUG is off.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string


class PaymentDeclined(Exception):
    """The payment was refused (card declined, bad token): final, the customer must act.

    `code` is what reaches the customer: each locale's `payment_failed` template words it
    itself (`card_declined`, `unknown_token`, or a provider's own code, which templates may
    word or leave to their generic sentence); the English `message` stays on the order.
    """

    def __init__(self, message: str, *, code: str = "card_declined") -> None:
        super().__init__(message)
        self.code = code


class PaymentGatewayError(Exception):
    """The gateway failed to answer properly; nothing was charged, the client may retry."""


@dataclass(frozen=True)
class PaymentResult:
    reference: str


class PaymentGateway(Protocol):
    def charge(self, *, amount: Decimal, currency: str, token: str, idempotency_key: str) -> PaymentResult:
        """Charge `amount`; raises PaymentDeclined or PaymentGatewayError."""
        ...


class SandboxPaymentGateway:
    """Test tokens: `tok_ok` succeeds, `tok_declined` is declined, `tok_error` fails at the gateway.

    Any other token is declined as unknown, as a real gateway declines a token it never issued.
    """

    def charge(self, *, amount: Decimal, currency: str, token: str, idempotency_key: str) -> PaymentResult:
        if token == "tok_ok":
            return PaymentResult(reference=f"pay_{secrets.token_hex(8)}")
        if token == "tok_declined":
            raise PaymentDeclined("The card was declined.")
        if token == "tok_error":
            raise PaymentGatewayError("The payment gateway did not answer properly.")
        raise PaymentDeclined("Unknown payment token.", code="unknown_token")


@cache
def payment_gateway() -> PaymentGateway:
    """The configured gateway, built once per process (it must be safe to share between threads)."""
    return import_string(settings.PAYMENT_GATEWAY)()
