"""The operator's admin driven in headless Chromium, with real sends through a real worker.

Run: `make test-browser` (or `.venv/bin/pytest -m browser tests/browser`). Screenshots land in
artifacts/screenshots/ and their paths are printed (`-s` shows them).
"""

from __future__ import annotations

import os
import re

import pytest
from django.contrib.auth.models import User

from notifications.models import Notification, NotificationStatus, NotificationTemplate, Vendor
from notifications.tests.factories import make_trigger
from sandbox.testing import SandboxHandle
from tests.browser.helpers import CHROMIUM, DELIVERY_TIMEOUT, login, wait_until

pytestmark = [
    pytest.mark.browser,
    # CI sets BEACON_REQUIRE_BROWSER: there a missing chromium fails the run instead of skipping.
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("BEACON_REQUIRE_BROWSER"),
        reason=f"{CHROMIUM} is missing (apt-get install chromium)",
    ),
]

PHONE = "+447911123321"


def run_action(page, row_text: str, action: str) -> None:
    page.locator("#result_list tr", has_text=row_text).locator("input.action-select").check()
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")


def wait_for_sent(notification_id: int) -> Notification:
    wait_until(
        lambda: Notification.objects.get(pk=notification_id).status == NotificationStatus.SENT,
        timeout=DELIVERY_TIMEOUT,
        what=f"notification {notification_id} to be sent",
    )
    return Notification.objects.get(pk=notification_id)


def dead_sms() -> Notification:
    """A notification every vendor failed (retry budget spent), as the sender leaves it."""
    trigger = make_trigger(phone=PHONE)
    return Notification.objects.create(
        trigger=trigger, event_type=trigger.event_type, channel="sms", recipient=PHONE, locale="en",
        status=NotificationStatus.DEAD, attempt_count=8, template_version="seed", last_error="sms-primary: outage",
        rendered_text="Beacon Shop: order AB12CD34 confirmed, total 47.30 EUR. Thank you, Ana!",
    )


def test_an_operator_logs_in_and_reads_the_overview(page, admin_user: User, vendors: dict) -> None:
    login(page, "admin")
    page.click("text=Overview")
    page.wait_for_selector("#overview")
    assert "sms-fallback" in page.inner_text("#overview-vendors")
    queues = page.inner_text("#overview-queues")
    assert all(name in queues for name in ("default", "email", "sms"))
    assert "all processes" in page.inner_text("#overview")  # shared hit counters in Redis


def test_a_template_with_a_syntax_error_is_refused_then_fixed_and_previewed_in_two_locales(
    page, admin_user: User, templates: None, screenshot
) -> None:
    login(page, "admin")
    page.goto("/admin/notifications/notificationtemplate/add/")
    page.fill("#id_event_type", "order_confirmed")
    page.select_option("#id_channel", "email")
    page.fill("#id_locale", "de")
    page.fill("#id_subject", "Bestellung {{ order_ref }} bestätigt")
    page.fill("#id_body_text", "Hallo {{ customer_name }},\nSumme: {{ total }")
    page.fill("#id_body_html", "<p>Hallo {{ customer_name }}, Summe <strong>{{ total }} {{ currency }}</strong></p>")
    page.click("input[name=_continue]")
    error = page.inner_text(".field-body_text .errorlist")
    assert "Line 2:" in error and "unexpected '}'" in error
    assert not NotificationTemplate.objects.filter(locale="de").exists()

    page.fill("#id_body_text", "Hallo {{ customer_name }},\nSumme: {{ total }} {{ currency }}")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    template = NotificationTemplate.objects.get(locale="de", event_type="order_confirmed", channel="email")
    assert template.version == 1 and template.versions.count() == 1

    page.click("text=Preview")
    page.wait_for_selector("#template-preview")
    assert page.inner_text("#preview-subject") == "Bestellung 3F2B8C1E bestätigt"
    assert "Summe: 47.30 EUR" in page.inner_text("#preview-text")
    assert "47.30 EUR" in page.frame_locator("#preview-html").locator("strong").inner_text()
    assert page.get_attribute("#preview-html", "sandbox") == ""
    screenshot("template-preview")

    with page.expect_navigation():
        page.select_option("#locale", "pt-BR")
    assert page.inner_text("#preview-subject") == "Pedido 3F2B8C1E confirmado"
    assert "pt-BR falls back to pt" in page.inner_text("#preview-source")
    assert "Obrigado pelo seu pedido" in page.frame_locator("#preview-html").locator("body").inner_text()
    screenshot("template-preview-pt-BR")


def test_a_test_message_goes_to_the_chosen_vendor_while_the_primary_circuit_is_forced_open(
    page, admin_user: User, vendors: dict[str, Vendor], sandbox: SandboxHandle, screenshot
) -> None:
    login(page, "admin")
    page.goto("/admin/notifications/vendor/")
    run_action(page, "sms-primary", "force_circuit_open")
    assert "Circuit forced open for 1 vendor(s)" in page.inner_text(".messagelist")
    forced = page.inner_text("#result_list tr:has-text('sms-primary')")
    assert re.search(r"forced open by admin at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", forced), forced

    run_action(page, "sms-fallback", "send_test_message")
    assert "sms-fallback only" in page.inner_text("#test-message")
    page.fill("#id_to", PHONE)
    page.click("text=Send test message")
    said = page.inner_text(".messagelist .success")
    assert re.search(r"sms-fallback accepted it in [\d.,]+ ms \(HTTP 201, id SM\w+\)", said), said
    page.click(".messagelist a")  # "Notification #N"
    notification_id = int(re.search(r"/notification/(\d+)/", page.url).group(1))

    notification = Notification.objects.get(pk=notification_id)
    assert (notification.status, notification.vendor.name) == (NotificationStatus.SENT, "sms-fallback")
    assert page.inner_text(".field-status .readonly") == "Sent"
    assert page.inner_text(".field-vendor .readonly") == "sms-fallback (sms)"
    assert re.search(r"\d ms", page.inner_text("#attempts-group"))
    screenshot("notification-detail")
    inbox = sandbox.control.messages("sms-fallback", to=PHONE)
    assert len(inbox) == 1 and "Beacon test message" in inbox[0]["body"]
    assert sandbox.control.messages("sms-primary") == []

    page.goto("/admin/notifications/vendor/")
    assert "100.0% of 1" in page.inner_text("#result_list tr:has-text('sms-fallback')")
    screenshot("vendor-list")

    page.goto("/admin/notifications/notification/overview/")
    assert "100.0%" in page.inner_text("#overview-vendors tr:has-text('sms-fallback')")
    screenshot("overview")


def test_the_overview_charts_the_last_hour_and_refreshes_itself(
    page, admin_user: User, vendors: dict[str, Vendor], templates: None, sandbox: SandboxHandle, screenshot
) -> None:
    from notifications.tests.helpers import dispatch, run_until_settled

    for _ in range(4):
        for notification in dispatch(make_trigger(phone=PHONE)).values():
            run_until_settled(notification.pk)
    login(page, "admin")
    page.goto("/admin/notifications/notification/overview/?refresh=2")

    charts = page.locator("#overview-charts svg.overview-chart")
    assert charts.count() == 3
    for index in range(3):
        box = charts.nth(index).bounding_box()
        assert box is not None and box["width"] > 250 and box["height"] > 80, box
    bar = page.locator("#chart-checkouts rect.bar").first
    assert bar.bounding_box()["height"] > 10  # 4 checkouts on a 0-5 axis
    assert page.locator("#chart-deliveries rect.bar").count() >= 2  # email and sms
    assert page.locator("#chart-latency polyline, #chart-latency circle").count() >= 2
    assert paid_in_chart(page) == 4
    # The tables are still there, beside the charts.
    assert "sms-primary" in page.inner_text("#overview-vendors")
    screenshot("overview-charts")

    make_trigger(phone=PHONE)  # a fifth checkout, after the page was drawn
    for _ in range(3):  # a reload that had begun before the checkout committed shows 4
        with page.expect_navigation(timeout=10_000):
            pass  # the page reloads itself (refresh=2)
        page.wait_for_selector("#chart-checkouts")
        if paid_in_chart(page) == 5:
            break
    assert paid_in_chart(page) == 5


def paid_in_chart(page) -> int:
    """The paid checkouts the overview's chart shows, over all its bars: one bar per minute, and
    a test can straddle the turn of a minute (4 checkouts then show as 3 and 1)."""
    return sum(int(count) for count in re.findall(r"paid: (\d+)</title>", page.inner_html("#chart-checkouts")))


def test_a_dead_notification_is_resent_and_delivered(
    page, admin_user: User, vendors: dict, sandbox: SandboxHandle, celery_worker
) -> None:
    notification = dead_sms()
    login(page, "admin")
    page.goto("/admin/notifications/notification/?status__exact=dead")
    run_action(page, f"{notification.pk}", "resend")
    assert "Queued 1 notification(s) for resending" in page.inner_text(".messagelist")

    assert wait_for_sent(notification.pk).vendor.name == "sms-primary"
    page.goto(f"/admin/notifications/notification/{notification.pk}/change/")
    assert page.inner_text(".field-status .readonly") == "Sent"
    assert len(sandbox.control.messages("sms-primary", to=PHONE)) == 1


def test_a_support_user_cannot_edit_a_vendor_but_can_view_and_resend(
    page, support_user: User, vendors: dict[str, Vendor], sandbox: SandboxHandle, celery_worker
) -> None:
    notification = dead_sms()
    login(page, "sam")
    response = page.goto(f"/admin/notifications/vendor/{vendors['sms-primary'].pk}/change/")
    assert response.status == 403

    page.goto("/admin/notifications/vendor/")
    assert "sms-primary" in page.inner_text("#result_list")
    page.goto("/admin/notifications/notification/")
    assert "+4479•••••321" in page.inner_text("#result_list")
    run_action(page, "+4479•••••321", "resend")
    assert "Queued 1 notification(s) for resending" in page.inner_text(".messagelist")
    wait_for_sent(notification.pk)
