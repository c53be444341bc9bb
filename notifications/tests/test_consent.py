"""Consent: the suppression list, SMS STOP/START/HELP through Twilio's signed inbound webhook
(sent by the sandbox), automatic entries from vendor refusals, and the rule for transactional
events. Real PostgreSQL, Redis and sandbox vendors; sends run in-process as a worker runs them."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from prometheus_client import REGISTRY

from notifications.configuration import template_save
from notifications.consent import address_hash, suppression_add
from notifications.models import (
    DeliveryAttempt,
    EventType,
    Notification,
    NotificationTemplate,
    Suppression,
    SuppressionScope,
    SuppressionSource,
)
from notifications.tests.factories import make_trigger, support_group
from notifications.tests.helpers import dispatch, run_until_settled
from sandbox.testing import SandboxHandle

PHONE = "+447911123456"


def deliver(trigger) -> dict[str, Notification]:
    """Dispatch and send every notification of `trigger`, as a worker would."""
    return {channel: run_until_settled(notification.pk) for channel, notification in dispatch(trigger).items()}


def suppressed_count(channel: str) -> float:
    return REGISTRY.get_sample_value("beacon_notifications_total", {"channel": channel, "vendor": "", "status": "suppressed"}) or 0.0


@pytest.fixture
def webhook_url(live_server, settings) -> str:
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
    return live_server.url + reverse("twilio-sms-inbound")


@pytest.mark.django_db(transaction=True)
def test_an_sms_stop_through_the_sandbox_suppresses_the_next_sms_while_its_email_still_goes(
    vendors: dict, templates: None, sandbox: SandboxHandle, webhook_url: str
) -> None:
    answer = sandbox.control.inbound_sms("sms-primary", from_=PHONE, body=" stop ", url=webhook_url)
    assert answer["status"] == 200, answer
    entry = Suppression.objects.get()
    assert (entry.channel, entry.address, entry.scope, entry.source) == ("sms", PHONE, "all", "sms_stop")
    before = suppressed_count("sms")

    settled = deliver(make_trigger(phone=PHONE))  # an order confirmation: transactional

    assert (settled["sms"].status, settled["email"].status) == ("suppressed", "sent")
    assert not DeliveryAttempt.objects.filter(notification=settled["sms"]).exists()
    assert sandbox.control.messages("sms-primary") == [] and sandbox.control.messages("sms-fallback") == []
    assert len(sandbox.control.messages("smtp-primary")) == 1
    assert suppressed_count("sms") == before + 1


@pytest.mark.django_db(transaction=True)
def test_start_lifts_a_stop_and_help_is_answered(
    vendors: dict, templates: None, sandbox: SandboxHandle, webhook_url: str, settings
) -> None:
    sandbox.control.inbound_sms("sms-primary", from_=PHONE, body="STOP", url=webhook_url)
    suppression_add(channel="sms", address=PHONE, source=SuppressionSource.OPERATOR, scope=SuppressionScope.MARKETING)

    started = sandbox.control.inbound_sms("sms-primary", from_=PHONE, body="Start", url=webhook_url)
    helped = sandbox.control.inbound_sms("sms-primary", from_=PHONE, body="HELP", url=webhook_url)

    assert started["status"] == 200
    # START lifts the STOP, not an operator's entry.
    assert list(Suppression.objects.values_list("source", flat=True)) == ["operator"]
    assert helped["status"] == 200 and f"<Message>{settings.SMS_HELP_REPLY}</Message>" in helped["body"]
    assert deliver(make_trigger(phone=PHONE))["sms"].status == "sent"


@pytest.mark.django_db(transaction=True)
def test_an_inbound_message_with_a_wrong_or_no_signature_changes_nothing(
    vendors: dict, sandbox: SandboxHandle, webhook_url: str
) -> None:
    forged = sandbox.control.inbound_sms("sms-primary", from_=PHONE, body="STOP", url=webhook_url, auth_token="guessed")
    other_account = sandbox.control.inbound_sms(
        "sms-primary", from_=PHONE, body="STOP", url=webhook_url, account_sid="AC" + "1" * 32
    )
    unsigned = Client().post(reverse("twilio-sms-inbound"), {"From": PHONE, "Body": "STOP", "AccountSid": "AC" + "0" * 32})

    assert (forged["status"], other_account["status"], unsigned.status_code) == (403, 403, 403)
    assert not Suppression.objects.exists()


@pytest.mark.django_db
def test_twilio_21610_puts_the_number_on_the_list_and_the_next_sms_is_suppressed(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    unsubscribed = "+15005550004"  # the sandbox answers 21610 for it, as Twilio does after a STOP to the carrier

    first = deliver(make_trigger(phone=unsubscribed))["sms"]
    second = deliver(make_trigger(phone=unsubscribed))["sms"]

    assert first.status == "failed"
    entry = Suppression.objects.get(channel="sms")
    assert (entry.source, entry.scope, entry.address_hash) == ("carrier_opt_out", "all", address_hash(channel="sms", address=unsubscribed))
    assert second.status == "suppressed"
    assert not DeliveryAttempt.objects.filter(notification=second).exists()


@pytest.mark.django_db
def test_a_hard_bounce_puts_the_address_on_the_list(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    address = f"Gone-{uuid.uuid4().hex[:6]}@Bounce.Example"

    assert deliver(make_trigger(email=address))["email"].status == "failed"
    assert deliver(make_trigger(email=address.lower()))["email"].status == "suppressed"
    entry = Suppression.objects.get(channel="email")
    assert (entry.address, entry.source) == (address.lower(), "hard_bounce")


@pytest.mark.django_db
def test_a_marketing_unsubscribe_stops_marketing_email_only(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    _marketing_event_type()
    address = f"ana-{uuid.uuid4().hex[:6]}@example.com"
    suppression_add(channel="email", address=address, source=SuppressionSource.UNSUBSCRIBE, scope=SuppressionScope.MARKETING)

    marketing = deliver(make_trigger(event_type="back_in_stock", email=address))
    transactional = deliver(make_trigger(email=address))

    assert marketing["email"].status == "suppressed"
    assert transactional["email"].status == "sent"
    assert [m["subject"] for m in sandbox.control.messages("smtp-primary")] == ["Order AB12CD34 confirmed"]


@pytest.mark.django_db
def test_operators_edit_the_list_and_support_only_views_it(admin_client: Client) -> None:
    add = reverse("admin:notifications_suppression_add")
    response = admin_client.post(add, {"channel": "email", "address": " Ana@Example.com ", "scope": "all", "note": "asked by phone"})
    assert response.status_code == 302, response.content.decode()[:2000]
    entry = Suppression.objects.get()
    assert (entry.address, entry.source, entry.address_hash) == (
        "ana@example.com", "operator", address_hash(channel="email", address="ana@example.com"),
    )
    assert admin_client.post(add, {"channel": "email", "address": "ANA@example.com", "scope": "all"}).status_code == 200
    assert admin_client.post(add, {"channel": "sms", "address": "0791", "scope": "all"}).status_code == 200
    assert Suppression.objects.count() == 1
    listing = admin_client.get(reverse("admin:notifications_suppression_changelist"), {"q": "ana@example.com"}).content.decode()
    assert "a•••@example.com" in listing and listing.count("ana@example.com") == 1  # only in the search box

    user = User.objects.create_user("sam", password="pw", is_staff=True)
    user.groups.add(support_group())
    support = Client()
    support.force_login(user)
    assert support.get(reverse("admin:notifications_suppression_changelist")).status_code == 200
    assert support.get(reverse("admin:notifications_suppression_change", args=[entry.pk])).status_code == 200
    assert support.post(add, {"channel": "sms", "address": PHONE, "scope": "all"}).status_code == 403
    assert support.post(reverse("admin:notifications_suppression_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    assert Suppression.objects.count() == 1


def _marketing_event_type() -> None:
    EventType.objects.create(name="back_in_stock", category="marketing", sample_payload={"customer_name": "Ana"})
    template_save(template=NotificationTemplate(
        event_type="back_in_stock", channel="email", locale="en", subject="It is back", body_text="Hi {{ customer_name }}"
    ))


@pytest.mark.django_db
def test_one_click_unsubscribe_from_a_marketing_email_stops_marketing_email_only(
    vendors: dict, templates: None, sandbox: SandboxHandle, settings
) -> None:
    settings.PUBLIC_BASE_URL = "https://beacon.example"
    _marketing_event_type()
    address = f"ana-{uuid.uuid4().hex[:6]}@example.com"

    deliver(make_trigger(event_type="back_in_stock", email=address))
    deliver(make_trigger(email=address))
    marketing, transactional = sandbox.control.messages("smtp-primary")
    headers = {name: " ".join(value.split()) for name, value in marketing["headers"]}  # unfolded
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith("<https://beacon.example/unsubscribe/")
    assert "List-Unsubscribe" not in dict(transactional["headers"])  # an order confirmation has no unsubscribe
    path = headers["List-Unsubscribe"][len("<https://beacon.example"):-1]

    client = Client()
    assert client.get(path).status_code == 200  # a scanner's GET changes nothing
    assert not Suppression.objects.exists()
    assert client.post("/unsubscribe/forged:token/", "List-Unsubscribe=One-Click",
                        content_type="application/x-www-form-urlencoded").status_code == 404
    answer = client.post(path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")

    assert answer.status_code == 200
    entry = Suppression.objects.get()
    assert (entry.channel, entry.address, entry.scope, entry.source) == ("email", address, "marketing", "unsubscribe")
    assert deliver(make_trigger(event_type="back_in_stock", email=address))["email"].status == "suppressed"
    assert deliver(make_trigger(email=address))["email"].status == "sent"
