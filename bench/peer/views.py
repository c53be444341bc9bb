"""The checkout as the tutorials write it: validate, save in a transaction, enqueue on commit."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from bench.peer.models import Order, OrderLine
from bench.peer.tasks import send_order_notifications


class CheckoutView(APIView):
    class InputSerializer(serializers.Serializer):
        class CustomerSerializer(serializers.Serializer):
            name = serializers.CharField(max_length=200)
            email = serializers.EmailField()
            phone = serializers.CharField(max_length=20)
            locale = serializers.CharField(max_length=10)

        class LineSerializer(serializers.Serializer):
            sku = serializers.CharField(max_length=64)
            name = serializers.CharField(max_length=200)
            quantity = serializers.IntegerField(min_value=1)
            unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)

        customer = CustomerSerializer()
        lines = LineSerializer(many=True, allow_empty=False, max_length=100)
        currency = serializers.CharField(max_length=3)
        payment_token = serializers.CharField(max_length=100)

    class OutputSerializer(serializers.ModelSerializer):
        class Meta:
            model = Order
            fields = ["id", "customer_email", "currency", "total", "created_at"]

    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        customer = data["customer"]
        with transaction.atomic():
            order = Order.objects.create(
                customer_name=customer["name"], customer_email=customer["email"], customer_phone=customer["phone"],
                locale=customer["locale"], currency=data["currency"],
                total=sum((line["quantity"] * line["unit_price"] for line in data["lines"]), Decimal(0)),
            )
            OrderLine.objects.bulk_create([OrderLine(order=order, **line) for line in data["lines"]])
            transaction.on_commit(lambda: send_order_notifications.delay(order.id))
        return Response(self.OutputSerializer(order).data, status=status.HTTP_201_CREATED)
