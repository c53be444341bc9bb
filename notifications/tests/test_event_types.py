"""Event types as data: registered in the admin with a JSON Schema and a sample, checked on
save, and the sample is what templates are checked and previewed with."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from checkout.tests.factories import VALID_CHECKOUT
from notifications.event_types import EVENT_ERROR_MAX_CHARS, EVENT_PAYLOAD_MAX_ERRORS, event_payload_errors
from notifications.models import EventType, NotificationTemplate, NotificationTrigger
from notifications.tests.factories import SHIPMENT_SAMPLE, SHIPMENT_SCHEMA, event_type_form, template_form


@pytest.mark.django_db
def test_the_checkouts_events_are_registered_event_types() -> None:
    registered = {row.name: row for row in EventType.objects.filter(name__in=["order_confirmed", "payment_failed"])}
    assert set(registered) == {"order_confirmed", "payment_failed"}
    for event_type in registered.values():
        assert event_type.category == "transactional"
        assert event_payload_errors(schema=event_type.payload_schema, payload=event_type.sample_payload) == []


@pytest.mark.django_db
def test_an_operator_registers_an_event_type_in_the_admin(admin_client: Client) -> None:
    response = admin_client.post(reverse("admin:notifications_eventtype_add"), event_type_form())

    assert response.status_code == 302, response.content.decode()[:2000]
    saved = EventType.objects.get(name="shipment_sent")
    assert (saved.payload_schema, saved.sample_payload, saved.category) == (SHIPMENT_SCHEMA, SHIPMENT_SAMPLE, "transactional")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"payload_schema": json.dumps({"type": "objekt"})}, "payload_schema", "Not a valid JSON Schema"),
        ({"payload_schema": json.dumps({"properties": {"a": {"minimum": "one"}}})}, "payload_schema", "Not a valid JSON Schema"),
        ({"payload_schema": "[1, 2]"}, "payload_schema", "must be a JSON object"),
        ({"sample_payload": json.dumps({"order_ref": "X", "carrier": "DHL"})}, "sample_payload",
         "The sample does not satisfy the schema: /: &#x27;tracking_url&#x27; is a required property"),
        ({"sample_payload": json.dumps({**SHIPMENT_SAMPLE, "parcels": 0})}, "sample_payload", "/parcels: 0 is less than the minimum of 1"),
        ({"payload_schema": json.dumps({"$ref": "https://schemas.example/remote.json"})}, "sample_payload", "cannot be resolved"),
        ({"name": "Shipment Sent"}, "name", "Lower-case letters"),
    ],
)
def test_an_event_type_with_a_bad_schema_or_sample_is_refused_with_the_reason(
    admin_client: Client, changes: dict, field: str, reason: str
) -> None:
    response = admin_client.post(reverse("admin:notifications_eventtype_add"), event_type_form(**changes))

    assert response.status_code == 200
    page = response.content.decode()
    assert reason in page, page[:3000]
    assert f"field-{field}" in page and "errorlist" in page
    assert not EventType.objects.filter(name__in=["shipment_sent", "Shipment Sent"]).exists()


@pytest.mark.django_db
def test_a_template_for_an_unregistered_event_type_is_refused(admin_client: Client) -> None:
    response = admin_client.post(reverse("admin:notifications_notificationtemplate_add"), template_form())

    assert response.status_code == 200
    assert "No event type is called &#x27;shipment_sent&#x27;" in response.content.decode()
    assert not NotificationTemplate.objects.filter(event_type="shipment_sent").exists()


@pytest.mark.django_db
def test_a_template_is_checked_and_previewed_with_its_event_types_sample(admin_client: Client) -> None:
    EventType.objects.create(name="shipment_sent", payload_schema=SHIPMENT_SCHEMA, sample_payload={**SHIPMENT_SAMPLE, "parcels": 0})
    # Dividing by the sample's parcels (0) fails: the check renders with this event type's sample.
    refused = admin_client.post(
        reverse("admin:notifications_notificationtemplate_add"), template_form(body_text="{{ 10 // parcels }} each")
    )
    assert refused.status_code == 200
    assert "With the sample data" in refused.content.decode()

    EventType.objects.filter(name="shipment_sent").update(sample_payload=SHIPMENT_SAMPLE)
    saved = admin_client.post(reverse("admin:notifications_notificationtemplate_add"), template_form())
    assert saved.status_code == 302
    template = NotificationTemplate.objects.get(event_type="shipment_sent", channel="sms")
    preview = admin_client.get(reverse("admin:notifications_notificationtemplate_preview", args=[template.pk])).content.decode()
    assert "Order 3F2B8C1E shipped with DHL: https://dhl.example/t/123" in preview
    page = admin_client.get(reverse("admin:notifications_eventtype_change", args=[EventType.objects.get(name="shipment_sent").pk]))
    assert "sms / en v1" in page.content.decode()


@pytest.mark.django_db
def test_support_views_event_types_but_cannot_change_them(support_client: Client) -> None:
    event_type = EventType.objects.get(name="order_confirmed")
    assert support_client.get(reverse("admin:notifications_eventtype_changelist")).status_code == 200
    assert support_client.get(reverse("admin:notifications_eventtype_add")).status_code == 403
    response = support_client.post(
        reverse("admin:notifications_eventtype_change", args=[event_type.pk]), event_type_form(name="order_confirmed")
    )
    assert response.status_code == 403
    assert EventType.objects.get(pk=event_type.pk).sample_payload != SHIPMENT_SAMPLE


def test_schema_errors_for_one_payload_are_bounded_in_count_and_length() -> None:
    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "integer"}}}}
    payload = {"items": ["x" * 5000] * 500}

    errors = event_payload_errors(schema=schema, payload=payload)

    assert len(errors) == EVENT_PAYLOAD_MAX_ERRORS
    assert all(len(error["message"]) <= EVENT_ERROR_MAX_CHARS for error in errors)
    assert errors[0]["path"] == "/items/0"


@pytest.mark.django_db(transaction=True)
def test_the_checkouts_payload_satisfies_its_registered_schema(api_client_with_key) -> None:
    """The checkout writes its trigger without validating it (no query on its hot path): this
    holds its payload to the schema registered for its event types."""
    from notifications.demo import demo_event_types_install

    demo_event_types_install()
    _client, key = api_client_with_key
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    for token in ("tok_ok", "tok_declined"):
        api.post("/api/v1/checkouts/", {**VALID_CHECKOUT, "payment_token": token}, format="json")
    triggers = list(NotificationTrigger.objects.all())
    assert {trigger.event_type for trigger in triggers} == {"order_confirmed", "payment_failed"}
    for trigger in triggers:
        schema = EventType.objects.get(name=trigger.event_type).payload_schema
        assert event_payload_errors(schema=schema, payload=trigger.payload) == []

