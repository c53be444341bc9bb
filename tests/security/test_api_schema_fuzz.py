"""7. schemathesis against the API's OpenAPI schema (checkouts and events) (/api/schema/): generated valid and
invalid requests, authenticated with a real API key, through the real WSGI app and database.
No 5xx, and every status, content type, header and body conforms to the schema."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from checkout.tests.factories import VALID_CHECKOUT
from config.wsgi import application

pytestmark = pytest.mark.django_db

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Cases per (operation, mode): 5 operations x 2 modes x 200 = 2,000 generated requests.
EXAMPLES_PER_OPERATION_AND_MODE = 200
MINIMUM_CASES = 1600


@pytest.fixture(autouse=True)
def _keep_the_test_transaction():
    """The in-process WSGI app would close the test's database connection after each request;
    Django's own test client disconnects this handler in the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(settings):
    settings.ALLOWED_HOSTS = ["localhost", "testserver"]  # schemathesis's WSGI transport sends Host: localhost
    settings.API_DOCS_ACCESS = "public"  # the schema is read without a key here
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    return schema.include(path_regex="^/api/v1/")


def test_the_schema_covers_every_checkout_and_event_operation(api_schema) -> None:
    labels = {operation.ok().label for operation in api_schema.get_all_operations()}
    assert labels == {
        "GET /api/v1/checkouts/", "POST /api/v1/checkouts/", "GET /api/v1/checkouts/{order_id}/",
        "POST /api/v1/events/", "GET /api/v1/events/{event_id}/",
    }


@pytest.mark.slow
def test_generated_requests_get_no_5xx_and_schema_conforming_answers(api_schema, api_client_with_key) -> None:
    _client, key = api_client_with_key
    headers = {"Authorization": f"Bearer {key}"}
    cases: Counter[str] = Counter()
    statuses: Counter[int] = Counter()

    for result in api_schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, headers, cases, statuses)

    print(f"schemathesis: {sum(cases.values())} cases; statuses {dict(sorted(statuses.items()))}")
    assert sum(cases.values()) >= MINIMUM_CASES, cases
    assert not any(status >= 500 for status in statuses)


def _fuzz(operation, mode: GenerationMode, headers: dict[str, str], cases: Counter, statuses: Counter) -> None:
    label = f"{operation.label} {mode}"

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case) -> None:
        # Our key, not a generated one: auth failures are covered by test_access_control.
        case.headers = {**(case.headers or {}), **headers}
        response = case.call_and_validate(checks=CHECKS, headers=headers)
        cases[label] += 1
        statuses[response.status_code] += 1

    fuzz()


@pytest.mark.parametrize(
    ("token", "key_body", "expected"),
    [
        ("tok_ok", None, 201),  # created
        ("tok_declined", None, 402),  # declined: the failed order in the body
        ("tok_error", None, 502),  # the gateway failed
        ("tok_ok", {"currency": "USD"}, 422),  # an Idempotency-Key reused with another body
    ],
)
def test_each_documented_answer_of_a_checkout_conforms_to_the_schema(
    api_schema, api_client_with_key, token: str, key_body: dict | None, expected: int
) -> None:
    """The answers random data rarely reaches, sent on purpose and checked the same way."""
    _client, key = api_client_with_key
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "schema-check"}
    body = {**VALID_CHECKOUT, "payment_token": token}
    operation = api_schema["/api/v1/checkouts/"]["POST"]
    if key_body is not None:
        operation.Case(body=body, headers=headers, media_type="application/json").call_and_validate(checks=CHECKS, headers=headers)
        body = {**body, **key_body}
    case = operation.Case(body=body, headers=headers, media_type="application/json")

    # 502 is the documented answer to a failing payment gateway, so only conformance is checked here.
    response = case.call_and_validate(checks=CHECKS[1:], headers=headers)

    assert response.status_code == expected


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, 202),  # accepted
        ({"data": {"order_ref": 7}}, 400),  # the data breaks the event type's schema
        ({"recipients": {"email": "ana@example.com", "sms": "+447911123456"}}, 422),  # no sms template
    ],
)
def test_each_documented_answer_of_an_event_conforms_to_the_schema(
    api_schema, api_client_with_key, changes: dict, expected: int
) -> None:
    from notifications.configuration import template_save
    from notifications.models import EventType, NotificationTemplate
    from notifications.tests.factories import SHIPMENT_SAMPLE, SHIPMENT_SCHEMA

    EventType.objects.create(name="shipment_sent", payload_schema=SHIPMENT_SCHEMA, sample_payload=SHIPMENT_SAMPLE)
    template_save(template=NotificationTemplate(event_type="shipment_sent", channel="email", locale="en", body_text="{{ carrier }}"))
    _client, key = api_client_with_key
    headers = {"Authorization": f"Bearer {key}"}
    body = {"event_type": "shipment_sent", "recipients": {"email": "ana@example.com"}, "data": SHIPMENT_SAMPLE, **changes}
    case = api_schema["/api/v1/events/"]["POST"].Case(body=body, headers=headers, media_type="application/json")

    response = case.call_and_validate(checks=CHECKS, headers=headers)

    assert response.status_code == expected
    if expected == 202:
        detail = api_schema["/api/v1/events/{event_id}/"]["GET"].Case(path_parameters={"event_id": response.json()["id"]}, headers=headers)
        assert detail.call_and_validate(checks=CHECKS, headers=headers).status_code == 200
