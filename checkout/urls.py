from __future__ import annotations

from django.urls import path

from checkout.apis import CheckoutDetailApi, CheckoutListCreateApi

app_name = "checkout"

urlpatterns = [
    path("checkouts/", CheckoutListCreateApi.as_view(), name="checkout-list"),
    path("checkouts/<uuid:order_id>/", CheckoutDetailApi.as_view(), name="checkout-detail"),
]
