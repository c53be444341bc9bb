"""The management commands a newcomer meets first."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from checkout.api_keys import api_client_authenticate
from checkout.models import Order
from checkout.tests.factories import checkout_body
from notifications.models import NotificationTemplate, Vendor

pytestmark = pytest.mark.django_db


def test_create_api_client_prints_a_working_key_as_its_last_line() -> None:
    out = StringIO()
    call_command("create_api_client", "shop-1", "--rate-limit", "120", stdout=out, stderr=StringIO())

    key = out.getvalue().strip().splitlines()[-1]
    client = api_client_authenticate(key=key)
    assert client is not None and client.name == "shop-1" and client.rate_limit_per_minute == 120


def test_create_api_client_refuses_a_taken_name() -> None:
    call_command("create_api_client", "shop-1", stdout=StringIO(), stderr=StringIO())

    with pytest.raises(CommandError, match="already exists"):
        call_command("create_api_client", "shop-1", stdout=StringIO(), stderr=StringIO())


def test_seed_demo_can_run_twice_and_prints_a_working_key_each_time() -> None:
    keys = []
    for _ in range(2):
        out = StringIO()
        call_command("seed_demo", "--sandbox-base-port", "8100", "--web-url", "http://127.0.0.1:8020", stdout=out)
        keys.append(out.getvalue().strip().splitlines()[-1])
        assert "http://127.0.0.1:8020/admin/" in out.getvalue()

    assert api_client_authenticate(key=keys[0]) is None  # rotated: only the latest key works
    assert api_client_authenticate(key=keys[1]) is not None
    assert sorted(Vendor.objects.values_list("name", flat=True)) == [
        "sms-fallback", "sms-primary", "smtp-fallback", "smtp-primary"
    ]
    assert Vendor.objects.get(name="sms-primary").settings["base_url"] == "http://127.0.0.1:8101"
    active = NotificationTemplate.objects.filter(is_active=True)
    assert active.count() == 8
    assert set(active.values_list("locale", flat=True)) == {"en", "pt"}


def test_seed_demo_after_an_order_keeps_the_client_and_the_order_and_rotates_the_key() -> None:
    first = StringIO()
    call_command("seed_demo", "--sandbox-base-port", "8100", stdout=first)
    old_key = first.getvalue().strip().splitlines()[-1]
    client = api_client_authenticate(key=old_key)
    checkout = APIClient()
    checkout.credentials(HTTP_AUTHORIZATION=f"Bearer {old_key}")
    order = checkout.post("/api/v1/checkouts/", checkout_body(), format="json")
    assert order.status_code == 201, order.content

    second = StringIO()
    call_command("seed_demo", "--sandbox-base-port", "8100", stdout=second)

    new_key = second.getvalue().strip().splitlines()[-1]
    assert "previous key is revoked, its 1 order(s) are kept" in second.getvalue()
    assert api_client_authenticate(key=old_key) is None
    assert api_client_authenticate(key=new_key).pk == client.pk
    assert Order.objects.get(pk=order.json()["id"]).client_id == client.pk
    checkout.credentials(HTTP_AUTHORIZATION=f"Bearer {new_key}")
    listed = checkout.get("/api/v1/checkouts/")
    assert [row["id"] for row in listed.json()["results"]] == [order.json()["id"]]
