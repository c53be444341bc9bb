"""Idempotency-Key, as a client relies on it: replay, conflict, in-flight, scope."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from checkout.api_keys import api_client_create
from checkout.models import ApiClient, IdempotencyRecord, Order
from checkout.tests.factories import CHECKOUTS_URL, VALID_CHECKOUT, checkout_body
from notifications.models import NotificationTrigger

pytestmark = pytest.mark.django_db


def test_the_same_key_and_body_replays_the_first_answer_without_a_second_order(api: APIClient) -> None:
    first = api.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json", HTTP_IDEMPOTENCY_KEY="order-1001")
    second = api.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json", HTTP_IDEMPOTENCY_KEY="order-1001")

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Order.objects.count() == 1
    assert NotificationTrigger.objects.count() == 1


def test_a_declined_payment_is_replayed_too(api: APIClient) -> None:
    declined = checkout_body(payment_token="tok_declined")
    first = api.post(CHECKOUTS_URL, declined, format="json", HTTP_IDEMPOTENCY_KEY="k-declined")
    second = api.post(CHECKOUTS_URL, declined, format="json", HTTP_IDEMPOTENCY_KEY="k-declined")

    assert first.status_code == second.status_code == 402
    assert second.json() == first.json()
    assert Order.objects.count() == 1


def test_the_same_body_formatted_differently_still_replays(api: APIClient) -> None:
    import json

    api.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json", HTTP_IDEMPOTENCY_KEY="k-format")
    reformatted = json.dumps(VALID_CHECKOUT, indent=4, sort_keys=True)
    again = api.post(CHECKOUTS_URL, data=reformatted, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-format")

    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"


def test_the_same_key_with_another_body_answers_422(api: APIClient) -> None:
    api.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json", HTTP_IDEMPOTENCY_KEY="order-1002")

    response = api.post(CHECKOUTS_URL, checkout_body(currency="EUR"), format="json", HTTP_IDEMPOTENCY_KEY="order-1002")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1


def test_the_same_key_while_the_first_request_is_in_flight_answers_409(
    api: APIClient, api_client_with_key: tuple[ApiClient, str], settings
) -> None:
    from checkout.idempotency import request_fingerprint

    client, _ = api_client_with_key
    # The first request has claimed the key and is still charging the card.
    IdempotencyRecord.objects.create(client=client, key="order-1003", request_fingerprint=request_fingerprint(VALID_CHECKOUT))

    response = api.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json", HTTP_IDEMPOTENCY_KEY="order-1003")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"
    # Retryable, and says so: a client asks again each second until the first request ends, or
    # until the key is taken over should that request have died with its web host.
    assert response["Retry-After"] == "1"
    assert f"taken over {settings.IDEMPOTENCY_IN_FLIGHT_TIMEOUT} s after it began" in response.json()["error"]["message"]
    assert Order.objects.count() == 0


def test_an_in_flight_key_whose_request_died_can_be_used_again(
    api: APIClient, api_client_with_key: tuple[ApiClient, str], settings
) -> None:
    from checkout.idempotency import request_fingerprint

    client, _ = api_client_with_key
    record = IdempotencyRecord.objects.create(client=client, key="order-1004", request_fingerprint=request_fingerprint(VALID_CHECKOUT))
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_IN_FLIGHT_TIMEOUT + 1)
    )

    response = api.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json", HTTP_IDEMPOTENCY_KEY="order-1004")

    assert response.status_code == 201
    assert Order.objects.count() == 1


def test_keys_are_scoped_per_client(api: APIClient) -> None:
    _, other_key = api_client_create(name="other-shop")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")

    first = api.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json", HTTP_IDEMPOTENCY_KEY="shared-key")
    second = other.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json", HTTP_IDEMPOTENCY_KEY="shared-key")

    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert "Idempotent-Replayed" not in second


def test_keys_older_than_24_hours_are_forgotten(api: APIClient) -> None:
    from checkout.idempotency import idempotency_records_purge

    api.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json", HTTP_IDEMPOTENCY_KEY="old-key")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))

    assert idempotency_records_purge() == 1
    response = api.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json", HTTP_IDEMPOTENCY_KEY="old-key")
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Order.objects.count() == 2


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_an_unusable_key_answers_400_and_writes_nothing(api: APIClient, key: str) -> None:
    response = api.post(CHECKOUTS_URL, VALID_CHECKOUT, format="json", HTTP_IDEMPOTENCY_KEY=key)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert Order.objects.count() == 0
