"""`POST /api/v1/events/` and `GET /api/v1/events/{id}/` as a client sees them: real
PostgreSQL, Redis and sandbox vendors; the worker's dispatch run in-process."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from checkout.api_keys import api_client_create
from checkout.models import IdempotencyRecord
from notifications.dispatch import trigger_dispatch
from notifications.event_types import EVENT_PAYLOAD_MAX_ERRORS
from notifications.models import EventType, NotificationTemplate, NotificationTrigger
from notifications.tests.factories import SHIPMENT_SAMPLE, SHIPMENT_SCHEMA, event_type_form, template_form
from sandbox.testing import SandboxHandle

URL = "/api/v1/events/"
EVENT = {
    "event_type": "shipment_sent",
    "recipients": {"email": "ana@example.com", "sms": "+447911123456"},
    "locale": "en",
    "data": {"order_ref": "AB12CD34", "carrier": "DHL", "tracking_url": "https://dhl.example/t/9", "parcels": 1},
}


def event(**changes: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(EVENT)), **changes}


@pytest.fixture
def shipment_sent(db) -> EventType:
    """The event type and its templates, written as the admin writes them."""
    from notifications.configuration import template_save

    registered = EventType.objects.create(name="shipment_sent", payload_schema=SHIPMENT_SCHEMA, sample_payload=SHIPMENT_SAMPLE)
    template_save(template=NotificationTemplate(
        event_type="shipment_sent", channel="email", locale="en", subject="Order {{ order_ref }} is on its way",
        body_text="{{ carrier }} has it: {{ tracking_url }}",
    ))
    template_save(template=NotificationTemplate(
        event_type="shipment_sent", channel="sms", locale="en", body_text="Order {{ order_ref }} shipped: {{ tracking_url }}",
    ))
    return registered


def triggers() -> int:
    return NotificationTrigger.objects.count()


@pytest.mark.django_db
def test_an_event_is_accepted_and_written_as_one_trigger_in_one_statement(api: APIClient, shipment_sent: EventType) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = api.post(URL, EVENT, format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["event_type"], body["locale"], body["channels"]) == ("shipment_sent", "en", ["email", "sms"])
    trigger = NotificationTrigger.objects.get()
    assert (trigger.event_type, trigger.payload, trigger.recipients) == ("shipment_sent", EVENT["data"], EVENT["recipients"])
    assert trigger.subject_ref.endswith(f":{body['id']}")
    assert [q["sql"] for q in queries.captured_queries if "INSERT" in q["sql"]] == [
        q["sql"] for q in queries.captured_queries if "notifications_notificationtrigger" in q["sql"] and "INSERT" in q["sql"]
    ]
    assert len([q for q in queries.captured_queries if "INSERT" in q["sql"]]) == 1


@pytest.mark.django_db
def test_data_that_breaks_the_schema_is_refused_with_the_schemas_errors(api: APIClient, shipment_sent: EventType) -> None:
    response = api.post(URL, event(data={"order_ref": 7, "carrier": "DHL", "parcels": 0}), format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["fields"]["data"] == [
        "/: 'tracking_url' is a required property",
        "/order_ref: 7 is not of type 'string'",
        "/parcels: 0 is less than the minimum of 1",
    ]
    assert triggers() == 0


@pytest.mark.django_db
def test_schema_errors_in_an_answer_are_bounded(api: APIClient, db) -> None:
    EventType.objects.create(name="stock_report", payload_schema={"type": "object", "additionalProperties": {"type": "integer"}})
    data = {f"sku-{index}": "x" * 100 for index in range(500)}  # 500 errors, 55 KB: under the body limit

    response = api.post(URL, event(event_type="stock_report", data=data), format="json")

    assert response.status_code == 400
    errors = response.json()["error"]["fields"]["data"]
    assert len(errors) == EVENT_PAYLOAD_MAX_ERRORS
    assert len(response.content) < 16 * 1024


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_type": "no_such_event"}, "event_type"),
        ({"recipients": {}}, "recipients"),
        ({"recipients": {"sms": "+44 7911 123456"}}, "recipients"),
        ({"recipients": {"email": "not-an-address"}}, "recipients"),
        ({"locale": "english"}, "locale"),
        ({"data": ["not", "an", "object"]}, "data"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(
    api: APIClient, shipment_sent: EventType, changes: dict, field: str
) -> None:
    response = api.post(URL, event(**changes), format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == [field]
    assert triggers() == 0


@pytest.mark.django_db
def test_a_channel_without_an_active_template_is_refused_at_the_door(api: APIClient, shipment_sent: EventType) -> None:
    NotificationTemplate.objects.filter(event_type="shipment_sent", channel="sms").update(is_active=False)
    from notifications.template_cache import template_cache_invalidate

    template_cache_invalidate(event_type="shipment_sent", channel="sms")
    api.credentials(HTTP_AUTHORIZATION=api._credentials["HTTP_AUTHORIZATION"], HTTP_IDEMPOTENCY_KEY="ship-1")

    refused = api.post(URL, EVENT, format="json")

    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "template_missing"
    assert refused.json()["error"]["channels"] == ["sms"]
    assert triggers() == 0
    assert not IdempotencyRecord.objects.filter(key="ship-1").exists()  # the key is free for the fixed request
    assert api.post(URL, event(recipients={"email": "ana@example.com"}), format="json").status_code == 202


@pytest.mark.django_db
def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(api: APIClient, shipment_sent: EventType) -> None:
    api.credentials(HTTP_AUTHORIZATION=api._credentials["HTTP_AUTHORIZATION"], HTTP_IDEMPOTENCY_KEY="ship-2")

    first = api.post(URL, EVENT, format="json")
    again = api.post(URL, EVENT, format="json")
    other = api.post(URL, event(locale="pt"), format="json")

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert triggers() == 1


@pytest.mark.django_db
def test_events_share_the_clients_rate_limit(shipment_sent: EventType) -> None:
    _client, key = api_client_create(name=f"slow-{uuid.uuid4().hex[:6]}", rate_limit_per_minute=1)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    assert api.post(URL, EVENT, format="json").status_code == 202
    limited = api.post(URL, EVENT, format="json")

    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert APIClient().post(URL, EVENT, format="json").status_code == 401
    assert triggers() == 1


@pytest.mark.django_db
def test_get_shows_the_events_notifications_to_its_client_only(
    api: APIClient, shipment_sent: EventType, vendors: dict, sandbox: SandboxHandle
) -> None:
    event_id = api.post(URL, EVENT, format="json").json()["id"]
    waiting = api.get(f"{URL}{event_id}/").json()
    assert (waiting["state"], waiting["notifications"]) == ("waiting", [])

    trigger_dispatch(trigger_id=NotificationTrigger.objects.get().pk)  # what the worker runs

    shown = api.get(f"{URL}{event_id}/").json()
    assert shown["state"] == "dispatched"
    assert {(n["channel"], n["status"], n["vendor"]) for n in shown["notifications"]} == {
        ("email", "sent", "smtp-primary"), ("sms", "sent", "sms-primary"),
    }
    _other, other_key = api_client_create(name=f"other-{uuid.uuid4().hex[:6]}")
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")
    assert stranger.get(f"{URL}{event_id}/").status_code == 404
    assert api.get(f"{URL}{uuid.uuid4()}/").json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_an_event_type_registered_in_the_admin_is_delivered_through_the_api(
    admin_client: Client, api: APIClient, vendors: dict, sandbox: SandboxHandle
) -> None:
    """Done-when of issue 24: no code names shipment_sent; the admin registers it and its
    templates, and POST /api/v1/events/ delivers it through the sandbox vendors."""
    assert admin_client.post(reverse("admin:notifications_eventtype_add"), event_type_form()).status_code == 302
    add_template = reverse("admin:notifications_notificationtemplate_add")
    assert admin_client.post(add_template, template_form()).status_code == 302
    assert admin_client.post(add_template, template_form(
        channel="email", subject="Order {{ order_ref }} is on its way", body_text="{{ carrier }}: {{ tracking_url }}",
    )).status_code == 302

    response = api.post(URL, EVENT, format="json")
    assert response.status_code == 202, response.content
    trigger_dispatch(trigger_id=NotificationTrigger.objects.get().pk)  # what the worker runs

    [email] = sandbox.control.messages("smtp-primary")
    assert (email["to"], email["subject"]) == (["ana@example.com"], "Order AB12CD34 is on its way")
    assert "DHL: https://dhl.example/t/9" in email["text"]
    [sms] = sandbox.control.messages("sms-primary")
    assert (sms["to"], sms["body"]) == ("+447911123456", "Order AB12CD34 shipped with DHL: https://dhl.example/t/9")
