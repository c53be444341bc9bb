"""A stand-in for a real provider's gateway: it implements docs/payments.md's interface and
accepts no test token, so a checkout through it proves PAYMENT_GATEWAY is what charges."""

from __future__ import annotations

from decimal import Decimal

from checkout.payments import PaymentDeclined, PaymentResult


class ProviderLikeGateway:
    def charge(self, *, amount: Decimal, currency: str, token: str, idempotency_key: str) -> PaymentResult:
        if token.startswith("pm_"):
            return PaymentResult(reference=f"provider_{idempotency_key or 'no-key'}")
        raise PaymentDeclined("No such payment method.")


class NotAGateway:
    """Has no charge(): the system check must refuse it."""
