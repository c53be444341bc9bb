"""What a send renders: locale fallback, escaping, and template edits reaching the very next send."""

from __future__ import annotations

import pytest

from notifications.configuration import template_save
from notifications.models import NotificationTemplate
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch, run_until_settled
from sandbox.testing import SandboxHandle

pytestmark = pytest.mark.django_db


def test_locale_falls_back_from_pt_br_to_pt(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    trigger = make_trigger(locale="pt-BR")

    run_until_settled(dispatch(trigger)["sms"].pk)

    assert "pedido AB12CD34 confirmado" in sandbox.control.messages("sms-primary")[0]["body"]


def test_unknown_locale_falls_back_to_the_default(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    run_until_settled(dispatch(make_trigger(locale="de"))["sms"].pk)

    assert "order AB12CD34 confirmed" in sandbox.control.messages("sms-primary")[0]["body"]


def test_html_email_escapes_hostile_names(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    run_until_settled(dispatch(make_trigger(name="<script>alert(1)</script>"))["email"].pk)

    html = sandbox.control.messages("smtp-primary")[0]["html"]
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_a_template_edit_is_used_by_the_very_next_send(
    vendors: dict, templates: None, sandbox: SandboxHandle, django_capture_on_commit_callbacks
) -> None:
    run_until_settled(dispatch(make_trigger())["sms"].pk)  # warms the cache with the old text
    template = NotificationTemplate.objects.get(event_type="order_confirmed", channel="sms", locale="en")
    template.body_text = "NEW TEXT for {{ order_ref }}"

    with django_capture_on_commit_callbacks(execute=True):
        template_save(template=template, saved_by="tester")
    run_until_settled(dispatch(make_trigger())["sms"].pk)

    bodies = [m["body"] for m in sandbox.control.messages("sms-primary")]
    assert bodies[-1] == "NEW TEXT for AB12CD34"
    assert template.version == 2


def test_a_template_edited_in_the_admin_is_used_by_the_very_next_send(
    vendors: dict, templates: None, sandbox: SandboxHandle, admin_client, django_capture_on_commit_callbacks
) -> None:
    from django.urls import reverse

    run_until_settled(dispatch(make_trigger())["sms"].pk)  # the old text is cached now
    template = NotificationTemplate.objects.get(event_type="order_confirmed", channel="sms", locale="en")
    form = {
        "event_type": "order_confirmed", "channel": "sms", "locale": "en", "is_active": "on", "subject": "",
        "body_text": "Edited in the admin: {{ order_ref }}", "body_html": "",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
    }

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:notifications_notificationtemplate_change", args=[template.pk]), form)
    assert response.status_code == 302
    run_until_settled(dispatch(make_trigger())["sms"].pk)

    assert sandbox.control.messages("sms-primary")[-1]["body"] == "Edited in the admin: AB12CD34"


def test_a_pt_br_sms_with_money_stays_in_gsm_7_and_one_segment(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    """CLDR writes "€ 47,30" (and "R$ 47,30") in pt-BR with a no-break space, which GSM-7 lacks:
    the whole SMS went UCS-2 and two segments (twice the price) where the English one took one."""
    notifications = dispatch(make_trigger(locale="pt-BR"))
    run_until_settled(notifications["sms"].pk)
    run_until_settled(notifications["email"].pk)

    sms = sandbox.control.messages("sms-primary")[0]
    assert "total € 47,30." in sms["body"] and "\u00a0" not in sms["body"]
    assert int(sms["num_segments"]) == 1
    email = sandbox.control.messages("smtp-primary")[0]  # the email keeps CLDR's no-break space
    assert "€\u00a047,30" in email["text"]
