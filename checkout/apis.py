"""The checkout REST API: one view per operation, validate -> one service -> serialize."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from django.core.validators import RegexValidator
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.generics import get_object_or_404
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from checkout.checkout_input import (
    CURRENCY_LENGTH,
    CUSTOMER_NAME_MAX_LENGTH,
    DEFAULT_LOCALE,
    EMAIL_MAX_LENGTH,
    LINE_NAME_MAX_LENGTH,
    LOCALE,
    LOCALE_MAX_LENGTH,
    LOCALE_MESSAGE,
    MAX_LINES,
    PAYMENT_TOKEN_MAX_LENGTH,
    QUANTITY_MAX,
    QUANTITY_MIN,
    SKU_MAX_LENGTH,
    checkout_input_validate,
    unit_price_parse,
)
from checkout.idempotency import idempotency_key_validate, request_fingerprint
from checkout.metrics import checkout_observed
from checkout.models import Order
from checkout.serializers import OrderOutputSerializer
from checkout.services import checkout_create
from foundation.phone_numbers import E164, E164_MAX_LENGTH, E164_MESSAGE, e164_validate
from money.amounts import AmountError, amount_check_minor_units
from money.currencies import ISO_4217_CODES
from notifications.selectors import notifications_for_subject
from notifications.serializers import NotificationStatusSerializer

ErrorBody = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorDetail",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(required=False),
            },
        )
    },
)


OrderPage = inline_serializer(
    name="PaginatedOrderList",
    fields={
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": OrderOutputSerializer(many=True),
    },
)
PAGE_PARAMETERS = [
    OpenApiParameter("limit", int, OpenApiParameter.QUERY, description="Orders per page (at most 200)."),
    OpenApiParameter("offset", int, OpenApiParameter.QUERY, description="Orders to skip."),
]


PaymentDeclinedBody = inline_serializer(
    name="PaymentDeclined",
    fields={
        "error": inline_serializer(
            name="PaymentDeclinedDetail", fields={"code": serializers.CharField(), "message": serializers.CharField()}
        ),
        "order": OrderOutputSerializer(),
    },
)


@extend_schema_field({"type": "string", "enum": sorted(ISO_4217_CODES), "example": "EUR"})
class CurrencyField(serializers.CharField):
    """A CharField the schema declares as the ISO 4217 codes (validated in the serializer)."""


@extend_schema_field(
    {"type": "string", "format": "decimal", "pattern": r"^[0-9]{1,10}(\.[0-9]{1,3})?$", "example": "19.90"}
)
class AmountField(serializers.Field):
    """A non-negative amount in ASCII digits with at most three decimals; how many decimals
    the currency allows (JPY 0, BRL 2, KWD 3) is checked by the serializer that knows it."""

    def to_internal_value(self, data: object) -> Decimal:
        return unit_price_parse(data)

    def to_representation(self, value: Decimal) -> str:
        return f"{value:f}"


class StrictIntegerField(serializers.IntegerField):
    """An IntegerField that refuses digits other than ASCII 0-9 (int("١٢") is 12 in Python)."""

    def to_internal_value(self, data: object) -> int:
        if isinstance(data, str) and not data.strip().isascii():
            self.fail("invalid")
        return super().to_internal_value(data)


class OrderDetailOutputSerializer(OrderOutputSerializer):
    notifications = serializers.SerializerMethodField()

    class Meta(OrderOutputSerializer.Meta):
        fields = [*OrderOutputSerializer.Meta.fields, "notifications"]

    @extend_schema_field(NotificationStatusSerializer(many=True))
    def get_notifications(self, order: Order) -> list[dict]:
        return notifications_for_subject(subject_ref=f"order:{order.pk}")


class CheckoutListCreateApi(APIView):
    """`/api/v1/checkouts/`: POST creates a checkout, GET lists the caller's orders."""

    class Pagination(LimitOffsetPagination):
        default_limit = 50
        max_limit = 200

    # The checkout body as the OpenAPI schema publishes it (a docstring here would be published
    # too). Requests are validated by checkout.checkout_input, which gives the same answers at a
    # fraction of the cost; checkout/tests/test_checkout_input.py holds the two equal.
    class InputSerializer(serializers.Serializer):
        class CustomerInput(serializers.Serializer):
            name = serializers.CharField(max_length=CUSTOMER_NAME_MAX_LENGTH)
            email = serializers.EmailField(max_length=EMAIL_MAX_LENGTH)
            phone = serializers.CharField(
                max_length=E164_MAX_LENGTH, help_text="E.164, e.g. +447911123456", validators=[RegexValidator(E164, E164_MESSAGE)]
            )
            locale = serializers.CharField(
                max_length=LOCALE_MAX_LENGTH,
                default=DEFAULT_LOCALE,
                help_text="e.g. en, pt, pt-BR",
                validators=[RegexValidator(LOCALE, LOCALE_MESSAGE)],
            )

            def validate_phone(self, value: str) -> str:
                return e164_validate(value)

            def validate_locale(self, value: str) -> str:
                if not LOCALE.match(value):
                    raise serializers.ValidationError(LOCALE_MESSAGE)
                return value

        class LineInput(serializers.Serializer):
            sku = serializers.CharField(max_length=SKU_MAX_LENGTH)
            name = serializers.CharField(max_length=LINE_NAME_MAX_LENGTH)
            quantity = StrictIntegerField(min_value=QUANTITY_MIN, max_value=QUANTITY_MAX)
            unit_price = AmountField()

        customer = CustomerInput()
        lines = LineInput(many=True, allow_empty=False, min_length=1, max_length=MAX_LINES)
        currency = CurrencyField(min_length=CURRENCY_LENGTH, max_length=CURRENCY_LENGTH, help_text="ISO 4217, e.g. EUR")
        payment_token = serializers.CharField(
            max_length=PAYMENT_TOKEN_MAX_LENGTH, help_text="Sandbox: tok_ok, tok_declined, tok_error"
        )

        def validate_currency(self, value: str) -> str:
            if value not in ISO_4217_CODES:
                raise serializers.ValidationError(f"'{value}' is not an ISO 4217 currency code.")
            return value

        def validate(self, attrs: dict) -> dict:
            """Every price has at most the currency's minor units (JPY 0, BRL 2, KWD 3)."""
            errors = {}
            for index, line in enumerate(attrs["lines"]):
                try:
                    amount_check_minor_units(line["unit_price"], attrs["currency"])
                except AmountError as exc:
                    errors[index] = {"unit_price": [str(exc)]}
            if errors:
                raise serializers.ValidationError({"lines": errors})
            return attrs

    @extend_schema(
        operation_id="checkout_create",
        request=InputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Replays the first answer for 24 hours instead of creating a second order.",
            )
        ],
        responses={
            201: OrderOutputSerializer,
            400: ErrorBody,
            401: ErrorBody,
            402: OpenApiResponse(PaymentDeclinedBody, description="Payment declined; the failed order is in `order`."),
            406: ErrorBody,
            409: ErrorBody,
            413: ErrorBody,
            415: ErrorBody,
            422: ErrorBody,
            429: ErrorBody,
            502: ErrorBody,
            503: ErrorBody,
        },
    )
    @checkout_observed
    def post(self, request: Request) -> Response:
        checkout = checkout_input_validate(request.data)
        key = request.headers.get("Idempotency-Key")
        outcome = checkout_create(
            client=request.user,
            customer=checkout.customer,
            lines=checkout.lines,
            currency=checkout.currency,
            payment_token=checkout.payment_token,
            idempotency_key=idempotency_key_validate(key) if key is not None else None,
            # Only a request with a key is compared with an earlier one: no hash without it.
            fingerprint=request_fingerprint(request.data) if key is not None else "",
        )
        headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
        return Response(outcome.body, status=outcome.status, headers=headers)

    @extend_schema(
        operation_id="checkout_list",
        parameters=PAGE_PARAMETERS,
        responses={200: OrderPage, 401: ErrorBody, 406: ErrorBody, 429: ErrorBody, 503: ErrorBody},
    )
    def get(self, request: Request) -> Response:
        orders = Order.objects.filter(client=request.user).prefetch_related("lines").order_by("-created_at", "id")
        paginator = self.Pagination()
        page = paginator.paginate_queryset(orders, request, view=self)
        return paginator.get_paginated_response(OrderOutputSerializer(page, many=True).data)


class CheckoutDetailApi(APIView):
    @extend_schema(operation_id="checkout_retrieve", responses={200: OrderDetailOutputSerializer, 401: ErrorBody, 404: ErrorBody, 406: ErrorBody})
    def get(self, request: Request, order_id: UUID) -> Response:
        order = get_object_or_404(Order.objects.prefetch_related("lines"), pk=order_id, client=request.user)
        return Response(OrderDetailOutputSerializer(order).data)
