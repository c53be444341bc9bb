"""The events API: any system asks Beacon to notify about a registered event type.

One view per operation: validate (the request's shape, then the data against the event type's
JSON Schema) -> one service (events_api/services.py) -> serialize. Authentication, the
rate limit, body size and JSON depth limits are the API's defaults, shared with the checkout.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from checkout.apis import ErrorBody
from checkout.idempotency import idempotency_key_validate, request_fingerprint
from events_api.services import event_get, event_publish
from foundation.phone_numbers import E164_MAX_LENGTH, e164_validate
from notifications.event_types import event_payload_errors, event_type_get
from notifications.serializers import NotificationStatusSerializer

_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")


class RecipientsSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254, required=False)
    sms = serializers.CharField(max_length=E164_MAX_LENGTH, required=False, help_text="E.164, e.g. +447911123456")

    def validate_sms(self, value: str) -> str:
        return e164_validate(value)

    def validate(self, attrs: dict) -> dict:
        if not attrs:
            raise serializers.ValidationError("Name at least one recipient: an email address, an sms number, or both.")
        return attrs


EventAccepted = inline_serializer(
    name="EventAccepted",
    fields={
        "id": serializers.UUIDField(),
        "event_type": serializers.CharField(),
        "locale": serializers.CharField(),
        "channels": serializers.ListField(child=serializers.CharField()),
        "created_at": serializers.DateTimeField(),
    },
)


class EventDetailSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    event_type = serializers.CharField()
    locale = serializers.CharField()
    state = serializers.ChoiceField(choices=["waiting", "dispatched", "dead"])
    created_at = serializers.DateTimeField()
    notifications = NotificationStatusSerializer(many=True)


class EventCreateApi(APIView):
    """`POST /api/v1/events/`: notify the recipients about one event of a registered type."""

    # Named for the schema: the checkout's nested InputSerializer is "InputRequest" already.
    @extend_schema_serializer(component_name="EventInput")
    class InputSerializer(serializers.Serializer):
        event_type = serializers.CharField(max_length=64, help_text="A registered event type, e.g. shipment_sent.")
        recipients = RecipientsSerializer(help_text="channel -> address; at least one.")
        locale = serializers.RegexField(
            _LOCALE, max_length=16, default="en", help_text="e.g. en, pt, pt-BR",
            error_messages={"invalid": "Enter a locale such as en, pt or pt-BR."},
        )
        data = serializers.DictField(help_text="The event's data: must satisfy the event type's JSON Schema.")

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            event_type = event_type_get(name=attrs["event_type"])
            if event_type is None:
                raise serializers.ValidationError({"event_type": [f"No event type is called '{attrs['event_type']}'."]})
            problems = event_payload_errors(schema=event_type.payload_schema, payload=attrs["data"])
            if problems:
                raise serializers.ValidationError({"data": [f"{p['path']}: {p['message']}" for p in problems]})
            return attrs

    @extend_schema(
        operation_id="event_create",
        request=InputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key", str, OpenApiParameter.HEADER,
                description="Replays the first answer for 24 hours instead of notifying twice.",
            )
        ],
        responses={
            202: EventAccepted,
            400: ErrorBody,
            401: ErrorBody,
            409: ErrorBody,
            413: ErrorBody,
            422: ErrorBody,
            429: ErrorBody,
            503: ErrorBody,
        },
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key = request.headers.get("Idempotency-Key")
        outcome = event_publish(
            client=request.user,
            event_type=data["event_type"],
            recipients=dict(data["recipients"]),
            locale=data["locale"],
            data=data["data"],
            idempotency_key=idempotency_key_validate(key) if key is not None else None,
            fingerprint=request_fingerprint(request.data),
        )
        headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
        return Response(outcome.body, status=outcome.status, headers=headers)


class EventDetailApi(APIView):
    @extend_schema(operation_id="event_retrieve", responses={200: EventDetailSerializer, 401: ErrorBody, 404: ErrorBody})
    def get(self, request: Request, event_id: UUID) -> Response:
        event = event_get(client=request.user, event_id=event_id)
        if event is None:
            raise NotFound("No event with this id.")
        return Response(EventDetailSerializer(event).data)
