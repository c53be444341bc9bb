from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from config.health import healthz, readyz
from config.metrics_view import metrics
from notifications.webhooks import email_unsubscribe, twilio_sms_inbound

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("webhooks/twilio/sms/", twilio_sms_inbound, name="twilio-sms-inbound"),
    path("unsubscribe/<str:token>/", email_unsubscribe, name="email-unsubscribe"),
    path("api/v1/", include("checkout.urls")),
    path("api/v1/", include("events_api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its init script as a file of its own: no inline script for the CSP to allow.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="api_docs/redoc.html"), name="api-redoc"),
]

handler404 = "config.error_views.not_found"
