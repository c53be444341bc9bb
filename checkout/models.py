"""Orders, their lines, the API clients that create them, and idempotency records."""

from __future__ import annotations

import uuid

from django.db import models


class ApiClient(models.Model):
    """A caller of the REST API. Its key is shown once and stored only as a SHA-256 hash.

    Keys look like `bk_<prefix>_<secret>`; the prefix finds the row, the hash is compared in
    constant time.
    """

    name = models.CharField(max_length=100, unique=True)
    key_prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    is_active = models.BooleanField(default=True)
    # Requests per minute; 0 uses API_DEFAULT_RATE_PER_MINUTE.
    rate_limit_per_minute = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    # DRF's IsAuthenticated asks request.user.is_authenticated.
    @property
    def is_authenticated(self) -> bool:
        return True


class OrderStatus(models.TextChoices):
    PAID = "paid", "Paid"
    PAYMENT_FAILED = "payment_failed", "Payment failed"


class Order(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(ApiClient, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=16, choices=OrderStatus.choices)
    currency = models.CharField(max_length=3)
    # Three decimals hold every currency's minor units exactly (KWD has 3); the currency's own
    # count is applied when an amount is accepted and when it is shown (money/).
    total = models.DecimalField(max_digits=19, decimal_places=3)
    customer_name = models.CharField(max_length=200)
    customer_email = models.EmailField()
    customer_phone = models.CharField(max_length=16)
    customer_locale = models.CharField(max_length=16)
    payment_reference = models.CharField(max_length=64, blank=True)
    payment_error = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["client", "-created_at"], name="order_client_created_idx")]

    def __str__(self) -> str:
        return f"Order {self.id}"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=13, decimal_places=3)
    line_total = models.DecimalField(max_digits=18, decimal_places=3)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"


class IdempotencyRecord(models.Model):
    """The first answer to an `Idempotency-Key`, replayed to the same client for 24 hours.

    A record without a response is in flight: a second request with that key gets 409.
    """

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "key"], name="idempotency_key_unique_per_client")]

    def __str__(self) -> str:
        return f"{self.client_id}:{self.key}"
