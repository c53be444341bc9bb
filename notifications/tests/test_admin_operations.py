"""The operator's admin, finished: test messages through exactly one vendor, circuits that say
who forced them and when, attempts in order with readable durations, and an overview that
refreshes itself and charts the last hour."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from notifications.models import AttemptOutcome, DeliveryAttempt, Notification, NotificationStatus, Vendor
from notifications.routing import vendor_circuit
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch, run_until_settled
from sandbox.testing import SandboxHandle

PHONE = "+447911123321"
VENDOR_LIST = "/admin/notifications/vendor/"


def send_test_message(client: Client, vendors: list[Vendor], to: str = PHONE) -> str:
    response = client.post(
        VENDOR_LIST,
        {"action": "send_test_message", "_selected_action": [v.pk for v in vendors], "apply": "1", "channel": vendors[0].channel, "to": to},
        follow=True,
    )
    assert response.status_code == 200
    return " ".join(m.message for m in response.context["messages"])


@pytest.fixture
def forced_open_primary(vendors: dict[str, Vendor]):
    circuit = vendor_circuit(vendors["sms-primary"])
    circuit.force("open", by="admin")
    yield vendors["sms-primary"]
    circuit.reset()


def test_a_test_message_goes_to_exactly_the_chosen_vendor_and_says_what_it_answered(
    admin_client: Client, vendors: dict[str, Vendor], sandbox: SandboxHandle
) -> None:
    said = send_test_message(admin_client, [vendors["sms-fallback"]])

    [message] = sandbox.control.messages("sms-fallback", to=PHONE)
    assert "Beacon test message for sms-fallback" in message["body"]
    assert sandbox.control.messages("sms-primary") == []
    assert re.search(r"sms-fallback accepted it in [\d.,]+ ms \(HTTP 201, id SM\w+\)", said), said
    notification = Notification.objects.get(event_type="vendor_test")
    assert (notification.status, notification.vendor, notification.vendor_message_id) == (
        NotificationStatus.SENT, vendors["sms-fallback"], message["sid"],
    )
    assert list(notification.attempts.values_list("vendor__name", "outcome")) == [("sms-fallback", AttemptOutcome.SENT)]


def test_a_test_message_reaches_a_vendor_whose_circuit_is_forced_open_without_closing_it(
    admin_client: Client, vendors: dict[str, Vendor], sandbox: SandboxHandle, forced_open_primary: Vendor
) -> None:
    said = send_test_message(admin_client, [forced_open_primary])

    assert len(sandbox.control.messages("sms-primary", to=PHONE)) == 1
    assert sandbox.control.messages("sms-fallback") == []
    assert "sms-primary accepted it" in said
    assert vendor_circuit(forced_open_primary).snapshot().state == "forced_open"


def test_a_refused_test_message_is_not_sent_elsewhere_and_the_refusal_is_shown(
    admin_client: Client, vendors: dict[str, Vendor], sandbox: SandboxHandle
) -> None:
    sandbox.control.set_faults("sms-fallback", failure_rate=1.0, error_status=503)

    said = send_test_message(admin_client, [vendors["sms-fallback"]])

    assert "sms-fallback did not accept it" in said and "transient error, HTTP 503" in said, said
    assert sandbox.control.messages("sms-primary") == [] and sandbox.control.messages("sms-fallback") == []
    notification = Notification.objects.get(event_type="vendor_test")
    assert notification.status == NotificationStatus.FAILED
    assert "HTTP 503" in notification.last_error


def test_a_test_message_to_an_invalid_number_shows_the_vendor_error_code(
    admin_client: Client, vendors: dict[str, Vendor], sandbox: SandboxHandle
) -> None:
    said = send_test_message(admin_client, [vendors["sms-primary"]], to="+15005550001")

    assert "sms-primary did not accept it" in said and "permanent error, HTTP 400, code 21211" in said, said


def test_a_test_message_needs_exactly_one_vendor(admin_client: Client, vendors: dict[str, Vendor], sandbox: SandboxHandle) -> None:
    said = send_test_message(admin_client, [vendors["sms-primary"], vendors["sms-fallback"]])

    assert "Select exactly one vendor" in said
    assert not Notification.objects.filter(event_type="vendor_test").exists()


def test_a_forced_circuit_shows_who_forced_it_and_when(
    admin_client: Client, vendors: dict[str, Vendor], forced_open_primary: Vendor
) -> None:
    listing = admin_client.get(VENDOR_LIST).content.decode()
    overview = admin_client.get(reverse("admin:notifications_overview")).content.decode()

    when = r"forced open by admin at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
    assert re.search(when, listing), listing
    assert re.search(when, overview)


def test_attempts_are_listed_in_the_order_they_happened_with_rounded_durations(
    admin_client: Client, vendors: dict[str, Vendor], templates: None, sandbox: SandboxHandle
) -> None:
    sandbox.control.set_faults("sms-primary", outage=True)
    notification = run_until_settled(dispatch(make_trigger(phone=PHONE))["sms"].pk)
    assert notification.vendor.name == "sms-fallback"
    DeliveryAttempt.objects.filter(notification=notification).update(duration_ms=1.4025230000243027)

    page = admin_client.get(reverse("admin:notifications_notification_change", args=[notification.pk])).content.decode()

    attempts = page[page.index('id="attempts-group"'):]
    assert attempts.index("sms-primary") < attempts.index("sms-fallback")
    assert "1.4 ms" in attempts and "1.402523" not in attempts


def test_the_admin_has_no_view_site_link_to_a_missing_page(admin_client: Client) -> None:
    page = admin_client.get("/admin/").content.decode()

    assert "View site" not in page


def test_the_overview_refreshes_itself_and_can_be_paused(admin_client: Client, vendors: dict[str, Vendor]) -> None:
    url = reverse("admin:notifications_overview")

    assert '<meta http-equiv="refresh" content="30">' in admin_client.get(url).content.decode()
    assert 'http-equiv="refresh"' not in admin_client.get(url, {"refresh": "0"}).content.decode()
    assert 'content="2"' in admin_client.get(url, {"refresh": "1"}).content.decode()
    assert 'content="3600"' in admin_client.get(url, {"refresh": "99999999999"}).content.decode()
    assert 'content="30"' in admin_client.get(url, {"refresh": "١٢"}).content.decode()


def test_the_overview_charts_the_last_hour_next_to_its_tables(
    admin_client: Client, vendors: dict[str, Vendor], templates: None, sandbox: SandboxHandle
) -> None:
    for _ in range(3):
        for notification in dispatch(make_trigger(phone=PHONE)).values():
            run_until_settled(notification.pk)
    failed = make_trigger(event_type="payment_failed", phone=PHONE)
    assert failed

    page = admin_client.get(reverse("admin:notifications_overview")).content.decode()

    charts = re.findall(r'<svg id="(chart-[a-z]+)"', page)
    assert charts == ["chart-checkouts", "chart-deliveries", "chart-latency"]
    checkouts = page[page.index('id="chart-checkouts"'):page.index('id="chart-deliveries"')]
    assert re.search(r"<title>\d\d:\d\d paid: 3</title>", checkouts), checkouts
    assert re.search(r"<title>\d\d:\d\d payment_failed: 1</title>", checkouts)
    deliveries = page[page.index('id="chart-deliveries"'):page.index('id="chart-latency"')]
    assert re.search(r"<title>\d\d:\d\d email: 3</title>", deliveries) and re.search(r"sms: 3</title>", deliveries)
    latency = page[page.index('id="chart-latency"'):]
    assert "<title>smtp-primary</title>" in latency and "<title>sms-primary</title>" in latency
    assert "<script" not in page[page.index('id="overview-charts"'):]
    assert "https://" not in page[page.index('id="overview-charts"'):].replace("http://www.w3.org/2000/svg", "")


def test_the_template_preview_shows_money_and_the_html_document_as_the_locale_gets_them(
    admin_client: Client, templates: None
) -> None:
    from notifications.models import NotificationTemplate

    template = NotificationTemplate.objects.get(event_type="order_confirmed", channel="email", locale="en")
    url = reverse("admin:notifications_notificationtemplate_preview", args=[template.pk])

    english = admin_client.get(url).context["rendered"]
    brazilian = admin_client.get(url, {"locale": "pt-BR"}).context["rendered"]

    assert "Total: €47.30" in english.text
    assert "Total: R$\xa047,30" in brazilian.text  # the sample is in the locale's currency
    assert brazilian.html.startswith("<!DOCTYPE html>") and '<html lang="pt-BR">' in brazilian.html
