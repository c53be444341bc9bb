from __future__ import annotations

from django.http import HttpResponse
from django.urls import path

from bench.peer.views import CheckoutView


def healthz(request):
    return HttpResponse(b"ok")


urlpatterns = [
    path("healthz", healthz),
    path("api/v1/checkouts/", CheckoutView.as_view()),
]
