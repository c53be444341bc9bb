"""The management commands a newcomer meets first."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from checkout.api_keys import api_client_authenticate
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
