"""The checkout API as a client sees it, against the real PostgreSQL and Redis."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.db import DataError, connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from checkout import api_keys
from checkout.models import ApiClient, IdempotencyRecord, Order, OrderLine
from checkout.services import Customer, LineItem, checkout_create
from checkout.tests.factories import CHECKOUTS_URL, VALID_CHECKOUT, checkout_body
from notifications.models import NotificationTrigger


def counts() -> tuple[int, int, int]:
    return Order.objects.count(), OrderLine.objects.count(), NotificationTrigger.objects.count()


@pytest.mark.django_db(transaction=True)
def test_checkout_stores_order_lines_and_trigger_and_answers_201(api: APIClient) -> None:
    response = api.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json")

    assert response.status_code == 201, response.content
    data = response.json()
    assert data["status"] == "paid"
    assert data["total"] == "47.30"
    assert [line["line_total"] for line in data["lines"]] == ["39.80", "7.50"]
    order = Order.objects.get(pk=data["id"])
    assert order.total == Decimal("47.30")
    trigger = NotificationTrigger.objects.get(subject_ref=f"order:{order.pk}")
    assert trigger.event_type == "order_confirmed"
    assert trigger.locale == "pt-BR"
    assert trigger.recipients == {"email": "ana@example.com", "sms": "+5511987654321"}
    assert trigger.payload["total"] == "47.30"
    assert trigger.payload["customer_name"] == "Ana Souza"
    assert response["X-Request-ID"]


@pytest.mark.django_db(transaction=True)
def test_checkout_writes_order_lines_and_trigger_in_one_statement(
    api: APIClient, api_client_with_key: tuple[ApiClient, str]
) -> None:
    """Two statements in all: the API key's lookup, and one INSERT of the order, its lines and
    its trigger; every column as the ORM would have written it."""
    with CaptureQueriesContext(connection) as queries:
        response = api.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json")

    assert response.status_code == 201, response.content
    statements = [query["sql"] for query in queries.captured_queries]
    assert len(statements) == 2, statements
    assert statements[1].startswith("WITH ") and statements[1].count("INSERT INTO") == 3
    order = Order.objects.get(pk=response.json()["id"])
    assert order.client == api_client_with_key[0]
    assert order.created_at.isoformat().replace("+00:00", "Z") == response.json()["created_at"]
    assert [(line.sku, line.quantity, line.line_total) for line in order.lines.all()] == [
        ("TSHIRT-M", 2, Decimal("39.80")),
        ("MUG", 1, Decimal("7.50")),
    ]
    trigger = NotificationTrigger.objects.get(subject_ref=f"order:{order.pk}")
    assert trigger.relay_after > trigger.created_at
    assert trigger.dispatched_at is None and trigger.publish_count == 0


@pytest.mark.django_db(transaction=True)
def test_a_row_the_database_refuses_writes_no_order_line_or_trigger(
    api_client_with_key: tuple[ApiClient, str], monkeypatch
) -> None:
    """The last row of the statement fails (a SKU too long for its column, past the API's
    validation): nothing of the checkout is stored, and nothing is handed to the broker."""
    handed_over = []
    monkeypatch.setattr("notifications.outbox.trigger_handoff", lambda **kwargs: handed_over.append(kwargs))
    lines = [
        LineItem(sku="MUG", name="Mug", quantity=1, unit_price=Decimal("7.50")),
        LineItem(sku="X" * 65, name="Too long", quantity=1, unit_price=Decimal("1.00")),
    ]

    with pytest.raises(DataError):
        checkout_create(
            client=api_client_with_key[0],
            customer=Customer(name="Ana", email="ana@example.com", phone="+5511987654321", locale="en"),
            lines=lines,
            currency="EUR",
            payment_token="tok_ok",
        )

    assert counts() == (0, 0, 0)
    assert handed_over == []


@pytest.mark.django_db
def test_declined_payment_stores_failed_order_and_payment_failed_trigger(api: APIClient) -> None:
    response = api.post(CHECKOUTS_URL, checkout_body(payment_token="tok_declined"), format="json")

    assert response.status_code == 402
    data = response.json()
    assert data["error"]["code"] == "payment_declined"
    assert data["order"]["status"] == "payment_failed"
    trigger = NotificationTrigger.objects.get()
    assert trigger.event_type == "payment_failed"
    assert Order.objects.get().status == "payment_failed"


@pytest.mark.django_db
def test_gateway_error_answers_502_and_writes_nothing(api: APIClient) -> None:
    response = api.post(CHECKOUTS_URL, checkout_body(payment_token="tok_error"), format="json", HTTP_IDEMPOTENCY_KEY="k-gw")

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "payment_gateway_error"
    assert counts() == (0, 0, 0)
    # The key is free again: the client may retry it.
    assert not IdempotencyRecord.objects.exists()


BAD_INPUTS = {
    "missing customer": ({k: v for k, v in VALID_CHECKOUT.items() if k != "customer"}, "customer"),
    "bad email": (checkout_body(customer={**VALID_CHECKOUT["customer"], "email": "not-an-email"}), "customer"),
    "phone not E.164": (checkout_body(customer={**VALID_CHECKOUT["customer"], "phone": "011 98765-4321"}), "customer"),
    "phone too short": (checkout_body(customer={**VALID_CHECKOUT["customer"], "phone": "+12"}), "customer"),
    "bad locale": (checkout_body(customer={**VALID_CHECKOUT["customer"], "locale": "portuguese"}), "customer"),
    "unknown currency": (checkout_body(currency="XYZ"), "currency"),
    "lowercase currency": (checkout_body(currency="brl"), "currency"),
    "zero quantity": (checkout_body(lines=[{**VALID_CHECKOUT["lines"][0], "quantity": 0}]), "lines"),
    "negative quantity": (checkout_body(lines=[{**VALID_CHECKOUT["lines"][0], "quantity": -1}]), "lines"),
    "quantity not a number": (checkout_body(lines=[{**VALID_CHECKOUT["lines"][0], "quantity": "two"}]), "lines"),
    "negative price": (checkout_body(lines=[{**VALID_CHECKOUT["lines"][0], "unit_price": "-1.00"}]), "lines"),
    "price with three decimals in BRL": (checkout_body(lines=[{**VALID_CHECKOUT["lines"][0], "unit_price": "1.001"}]), "lines"),
    "price with four decimals in KWD": (checkout_body(currency="KWD", lines=[{**VALID_CHECKOUT["lines"][0], "unit_price": "1.2345"}]), "lines"),
    "half a yen": (checkout_body(currency="JPY", lines=[{**VALID_CHECKOUT["lines"][0], "unit_price": "1.5"}]), "lines"),
    "price in Arabic-Indic digits": (checkout_body(lines=[{**VALID_CHECKOUT["lines"][0], "unit_price": "١٢"}]), "lines"),
    "price of 10^10": (checkout_body(lines=[{**VALID_CHECKOUT["lines"][0], "unit_price": "10000000000"}]), "lines"),
    "price with an exponent": (checkout_body(lines=[{**VALID_CHECKOUT["lines"][0], "unit_price": "1e2"}]), "lines"),
    "no lines": (checkout_body(lines=[]), "lines"),
    "more than 100 lines": (checkout_body(lines=[VALID_CHECKOUT["lines"][0]] * 101), "lines"),
    "lines not a list": (checkout_body(lines="many"), "lines"),
    "fractional yen": (checkout_body(currency="JPY", lines=[{**VALID_CHECKOUT["lines"][0], "unit_price": "10.50"}]), "lines"),
    "missing payment token": ({k: v for k, v in VALID_CHECKOUT.items() if k != "payment_token"}, "payment_token"),
    "customer wrong type": (checkout_body(customer="Ana"), "customer"),
}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("currency", "unit_price", "total", "line_total"),
    [("KWD", "1.234", "2.468", "2.468"), ("JPY", "4500", "9000", "9000"), ("BRL", "9.5", "19.00", "19.00")],
)
def test_amounts_are_accepted_and_stored_with_the_currency_minor_units(
    api: APIClient, currency: str, unit_price: str, total: str, line_total: str
) -> None:
    lines = [{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": unit_price}]

    response = api.post(CHECKOUTS_URL, checkout_body(currency=currency, lines=lines), format="json")

    assert response.status_code == 201, response.content
    data = response.json()
    assert data["total"] == total
    assert data["lines"][0]["line_total"] == line_total
    order = Order.objects.get(pk=data["id"])
    assert order.total == Decimal(total)
    assert order.lines.get().unit_price == Decimal(unit_price)
    assert api.get(f"{CHECKOUTS_URL}{order.pk}/").json()["total"] == total
    assert NotificationTrigger.objects.get(subject_ref=f"order:{order.pk}").payload["total"] == total


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_answers_400_with_field_errors_and_writes_nothing(api: APIClient, case: str) -> None:
    payload, field = BAD_INPUTS[case]

    response = api.post(CHECKOUTS_URL, payload, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["fields"]
    assert counts() == (0, 0, 0)


@pytest.mark.django_db
def test_malformed_json_answers_400(api: APIClient) -> None:
    response = api.post(CHECKOUTS_URL, data='{"customer": ', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    assert counts() == (0, 0, 0)


@pytest.mark.django_db
def test_body_over_64_kib_answers_413_and_writes_nothing(api: APIClient) -> None:
    payload = checkout_body(customer={**VALID_CHECKOUT["customer"], "name": "x" * (70 * 1024)})

    response = api.post(CHECKOUTS_URL, data=json.dumps(payload), content_type="application/json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert counts() == (0, 0, 0)


@pytest.mark.django_db
def test_non_json_content_type_answers_415(api: APIClient) -> None:
    response = api.post(CHECKOUTS_URL, data="customer=x", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert counts() == (0, 0, 0)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [None, "Bearer bk_00000000_wrong", "Bearer ", "Basic dXNlcjpwYXNz", "bk_00000000_no_scheme"],
)
def test_missing_or_bad_key_answers_401(header: str | None) -> None:
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)

    response = client.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert counts() == (0, 0, 0)


@pytest.mark.django_db
def test_inactive_client_key_answers_401(api: APIClient, api_client_with_key: tuple[ApiClient, str]) -> None:
    client, _ = api_client_with_key
    ApiClient.objects.filter(pk=client.pk).update(is_active=False)

    assert api.get(CHECKOUTS_URL).status_code == 401


@pytest.mark.django_db
def test_keys_are_stored_hashed(api_client_with_key: tuple[ApiClient, str]) -> None:
    client, key = api_client_with_key
    stored = ApiClient.objects.filter(pk=client.pk).values().get()
    assert key not in json.dumps(stored, default=str)


@pytest.mark.django_db
def test_orders_are_scoped_to_the_calling_client(api: APIClient) -> None:
    order_id = api.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json").json()["id"]
    from checkout.api_keys import api_client_create

    _, other_key = api_client_create(name="other-shop")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")

    assert other.get(f"{CHECKOUTS_URL}{order_id}/").status_code == 404
    assert other.get(CHECKOUTS_URL).json()["count"] == 0
    assert api.get(f"{CHECKOUTS_URL}{order_id}/").status_code == 200
    assert api.get(CHECKOUTS_URL).json()["count"] == 1


@pytest.mark.django_db
def test_list_is_paginated_newest_first(api: APIClient) -> None:
    for _ in range(3):
        api.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json")

    page = api.get(CHECKOUTS_URL, {"limit": 2}).json()

    assert page["count"] == 3
    assert len(page["results"]) == 2
    assert page["next"]
    assert page["results"][0]["created_at"] >= page["results"][1]["created_at"]


@pytest.mark.django_db
def test_detail_of_unknown_order_is_404(api: APIClient) -> None:
    assert api.get(f"{CHECKOUTS_URL}00000000-0000-0000-0000-000000000000/").status_code == 404
    assert api.get(f"{CHECKOUTS_URL}not-a-uuid/").status_code == 404


@pytest.mark.django_db
def test_throttle_answers_429_with_retry_after(api: APIClient, api_client_with_key: tuple[ApiClient, str]) -> None:
    client, _ = api_client_with_key
    ApiClient.objects.filter(pk=client.pk).update(rate_limit_per_minute=3)

    statuses = [api.get(CHECKOUTS_URL).status_code for _ in range(5)]

    assert statuses[:3] == [200, 200, 200]
    assert statuses[3:] == [429, 429]
    response = api.get(CHECKOUTS_URL)
    assert response.json()["error"]["code"] == "rate_limited"
    # Sliding window: the full minute still weighs on the next one, so up to two minutes.
    assert 0 < int(response["Retry-After"]) <= 2 * 60 + 1


@pytest.mark.django_db
def test_openapi_schema_and_docs_are_served(api: APIClient) -> None:
    client = api  # an API key (API_DOCS_ACCESS=authenticated)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    assert "/api/v1/checkouts/" in paths
    assert "post" in paths["/api/v1/checkouts/"]
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_failing_hand_off_after_commit_still_answers_201(api: APIClient, monkeypatch) -> None:
    def broken_publish(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("hand-off exploded")

    monkeypatch.setattr("notifications.outbox.task_publish_bounded", broken_publish)

    response = api.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json")

    assert response.status_code == 201
    assert NotificationTrigger.objects.filter(dispatched_at__isnull=True).count() == 1  # left for the relay


@pytest.mark.django_db
def test_a_key_revoked_elsewhere_stops_working_within_a_second(
    api: APIClient, api_client_with_key: tuple[ApiClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process revokes the key (an UPDATE this process hears nothing of): this process
    still trusts the client row it read for at most KEY_CACHE_SECONDS, then refuses the key."""
    client, _ = api_client_with_key
    now = [1000.0]
    monkeypatch.setattr(api_keys, "_clock", lambda: now[0])
    assert api.get(CHECKOUTS_URL).status_code == 200

    ApiClient.objects.filter(pk=client.pk).update(is_active=False)
    now[0] += api_keys.KEY_CACHE_SECONDS - 0.01
    assert api.get(CHECKOUTS_URL).status_code == 200
    now[0] += 0.02
    assert api.get(CHECKOUTS_URL).status_code == 401


@pytest.mark.django_db
def test_a_key_revoked_or_rotated_in_this_process_stops_working_at_once(
    api: APIClient, api_client_with_key: tuple[ApiClient, str]
) -> None:
    client, old_key = api_client_with_key
    assert api.get(CHECKOUTS_URL).status_code == 200

    new_key = api_keys.api_client_key_rotate(client=client)
    assert api.get(CHECKOUTS_URL).status_code == 401
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {new_key}")
    assert api.get(CHECKOUTS_URL).status_code == 200

    client.is_active = False
    client.save(update_fields=["is_active"])
    assert api.get(CHECKOUTS_URL).status_code == 401
    assert old_key != new_key


@pytest.mark.django_db
def test_the_client_row_is_read_once_a_second_per_process(
    api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(api_keys, "_clock", lambda: now[0])
    assert api.get(CHECKOUTS_URL).status_code == 200
    with CaptureQueriesContext(connection) as second:
        assert api.get(CHECKOUTS_URL).status_code == 200
    assert not [query for query in second.captured_queries if "checkout_apiclient" in query["sql"]]
    now[0] += api_keys.KEY_CACHE_SECONDS
    with CaptureQueriesContext(connection) as later:
        assert api.get(CHECKOUTS_URL).status_code == 200
    assert [query for query in later.captured_queries if "checkout_apiclient" in query["sql"]]


def test_the_key_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_keys, "KEY_CACHE_MAX_CLIENTS", 3)
    monkeypatch.setattr(api_keys, "api_client_by_prefix", lambda prefix: ApiClient(pk=1, key_prefix=prefix))
    for index in range(10):
        api_keys._active_client(f"prefix{index:02d}")
        assert len(api_keys._clients_by_prefix) <= 3
