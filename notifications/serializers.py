"""How a notification's delivery is shown to API clients (an order's detail, an event's detail)."""

from __future__ import annotations

from rest_framework import serializers


class NotificationStatusSerializer(serializers.Serializer):
    channel = serializers.CharField()
    status = serializers.CharField()
    vendor = serializers.CharField(allow_null=True)
    attempts = serializers.IntegerField()
    possible_duplicate = serializers.BooleanField(
        help_text="An earlier attempt's outcome was unknown, so the recipient may have received it twice."
    )
    sent_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()
