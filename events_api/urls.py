from __future__ import annotations

from django.urls import path

from events_api.apis import EventCreateApi, EventDetailApi

app_name = "events_api"

urlpatterns = [
    path("events/", EventCreateApi.as_view(), name="event-create"),
    path("events/<uuid:event_id>/", EventDetailApi.as_view(), name="event-detail"),
]
