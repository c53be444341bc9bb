"""Vendor settings are checked when an operator saves them in the admin: the formats the vendor
will insist on (SIDs, E.164 senders, absolute URLs, sender addresses), each with a clear message
naming the field, and nothing saved until they are right."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from notifications.models import Vendor
from notifications.tests.factories import vendor_form_data

pytestmark = pytest.mark.django_db


def save(admin_client: Client, vendor: Vendor, **settings: Any) -> tuple[int, str]:
    url = reverse("admin:notifications_vendor_change", args=[vendor.pk])
    form = vendor_form_data(vendor, settings=json.dumps({**vendor.settings, **settings}))
    if vendor.adapter == "smtp":
        form.pop("secret__auth_token")
    response = admin_client.post(url, form)
    return response.status_code, response.content.decode()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"messaging_service_sid": "MG123"}, "messaging_service_sid: must be MG followed by 32 hex digits"),
        ({"from_number": "5005550006"}, "from_number: must be a phone number in E.164"),
        ({"from_number": "+1 500 555 0006"}, "from_number: must be a phone number in E.164"),
        ({"status_callback": "/twilio/status"}, "status_callback: must be an absolute URL"),
        ({"status_callback": "https://my_shop.example/s"}, "status_callback: the host may not contain underscores"),
        ({"base_url": "api.twilio.com"}, "base_url: must be an absolute URL"),
    ],
)
def test_twilio_settings_twilio_would_refuse_are_not_saved(
    admin_client: Client, vendors: dict[str, Vendor], changes: dict[str, str], message: str
) -> None:
    vendor = vendors["sms-primary"]

    status, page = save(admin_client, vendor, **changes)

    assert status == 200 and message in page
    assert Vendor.objects.get(pk=vendor.pk).settings == vendor.settings


def test_valid_twilio_settings_are_saved(admin_client: Client, vendors: dict[str, Vendor]) -> None:
    vendor = vendors["sms-primary"]
    service = "MG" + "0123456789abcdef" * 2

    status, _ = save(admin_client, vendor, messaging_service_sid=service, from_number="BeaconShop",
                     status_callback="https://shop.example/twilio/status")

    assert status == 302
    saved = Vendor.objects.get(pk=vendor.pk).settings
    assert (saved["messaging_service_sid"], saved["from_number"]) == (service, "BeaconShop")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"from_email": "no-reply"}, "from_email: must be an email address"),
        ({"from_email": "Shop <shop.example>"}, "from_email: must be an email address"),
        ({"host": "smtp://relay.example"}, "host: must be a host name or IP address"),
        ({"host": "relay.example:587"}, "host: must be a host name or IP address"),
    ],
)
def test_smtp_settings_a_relay_would_refuse_are_not_saved(
    admin_client: Client, vendors: dict[str, Vendor], changes: dict[str, str], message: str
) -> None:
    vendor = vendors["smtp-primary"]

    status, page = save(admin_client, vendor, **changes)

    assert status == 200 and message in page
    assert Vendor.objects.get(pk=vendor.pk).settings == vendor.settings
