"""The operator's admin, through Django's test client against the real database and Redis."""

from __future__ import annotations

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from foundation.masking import address_mask
from notifications.models import Notification, NotificationStatus, NotificationTemplate, Vendor
from notifications.routing import vendor_circuit
from notifications.tests.factories import make_trigger, vendor_form_data
from notifications.vendor_secrets import secrets_stored

SANDBOX_TOKEN = "sandbox-token"


def dead_notification(phone: str = "+447911123321") -> Notification:
    trigger = make_trigger(phone=phone)
    return Notification.objects.create(
        trigger=trigger, event_type=trigger.event_type, channel="sms", recipient=phone, locale="en",
        status=NotificationStatus.DEAD, attempt_count=8, template_version="test", rendered_text="Hello",
        last_error="every vendor failed",
    )


def test_the_mask_keeps_only_the_ends_of_an_address() -> None:
    assert address_mask("+447911123321") == "+4479•••••321"
    assert address_mask("john@example.com") == "j•••@example.com"


def test_the_vendor_page_never_renders_a_secret_back(admin_client: Client, vendors: dict[str, Vendor]) -> None:
    vendor = vendors["sms-primary"]
    response = admin_client.get(reverse("admin:notifications_vendor_change", args=[vendor.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert SANDBOX_TOKEN not in page
    assert vendor.secrets_encrypted not in page
    assert "Currently set" in page
    assert 'name="secret__auth_token"' in page


def test_a_blank_secret_keeps_the_old_value_and_a_typed_one_replaces_it(
    admin_client: Client, vendors: dict[str, Vendor]
) -> None:
    vendor = vendors["sms-primary"]
    url = reverse("admin:notifications_vendor_change", args=[vendor.pk])
    response = admin_client.post(url, vendor_form_data(vendor, priority=5))
    assert response.status_code == 302, response.context["adminform"].form.errors
    vendor.refresh_from_db()
    assert vendor.priority == 5
    assert secrets_stored(vendor.secrets_encrypted) == {"auth_token": SANDBOX_TOKEN}

    admin_client.post(url, vendor_form_data(vendor, secret__auth_token="rotated-token"))
    vendor.refresh_from_db()
    assert secrets_stored(vendor.secrets_encrypted) == {"auth_token": "rotated-token"}
    entry = LogEntry.objects.filter(object_id=str(vendor.pk), action_flag=CHANGE).latest("action_time")
    assert "rotated-token" not in entry.change_message


def test_invalid_vendor_settings_are_reported_readably(admin_client: Client, vendors: dict[str, Vendor]) -> None:
    vendor = vendors["sms-primary"]
    url = reverse("admin:notifications_vendor_change", args=[vendor.pk])
    response = admin_client.post(url, vendor_form_data(vendor, settings='{"account_sid": "nope"}'))
    assert response.status_code == 200
    assert "account_sid: must be AC followed by 32 hex digits" in response.content.decode()


def test_a_support_user_cannot_open_a_vendor_change_page(support_client: Client, vendors: dict[str, Vendor]) -> None:
    vendor = vendors["sms-primary"]
    assert support_client.get(reverse("admin:notifications_vendor_change", args=[vendor.pk])).status_code == 403
    assert support_client.get(reverse("admin:notifications_vendor_add")).status_code == 403
    listing = support_client.get(reverse("admin:notifications_vendor_changelist"))
    assert listing.status_code == 200
    assert "sms-primary" in listing.content.decode()


def test_a_support_user_can_view_and_resend_notifications(support_client: Client, db) -> None:
    notification = dead_notification()
    assert support_client.get(reverse("admin:notifications_notification_change", args=[notification.pk])).status_code == 200
    response = support_client.post(
        reverse("admin:notifications_notification_changelist"),
        {"action": "resend", "_selected_action": [notification.pk]},
        follow=True,
    )
    assert "Queued 1 notification(s) for resending" in response.content.decode()
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.PENDING


def test_staff_without_the_resend_permission_cannot_resend(db) -> None:
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    notification = dead_notification()
    assert client.get(reverse("admin:notifications_requeue_dead")).status_code == 403
    client.post(reverse("admin:notifications_notification_changelist"), {"action": "resend", "_selected_action": [notification.pk]})
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.DEAD


def test_recipients_are_masked_in_the_notification_list(admin_client: Client, db) -> None:
    notification = dead_notification(phone="+447911123321")
    page = admin_client.get(reverse("admin:notifications_notification_changelist")).content.decode()
    assert "+4479•••••321" in page
    assert "+447911123321" not in page
    order_ref = notification.trigger.subject_ref.removeprefix("order:")
    found = admin_client.get(reverse("admin:notifications_notification_changelist"), {"q": order_ref[:8]})
    assert list(found.context["cl"].result_list) == [notification]


def test_a_forced_circuit_is_applied_and_logged(admin_client: Client, vendors: dict[str, Vendor]) -> None:
    vendor = vendors["sms-primary"]
    response = admin_client.post(
        reverse("admin:notifications_vendor_changelist"),
        {"action": "force_circuit_open", "_selected_action": [vendor.pk]},
        follow=True,
    )
    assert "Circuit forced open for 1 vendor(s)" in response.content.decode()
    snapshot = vendor_circuit(vendor).snapshot()
    assert (snapshot.state, snapshot.forced_by) == ("forced_open", "admin")
    entry = LogEntry.objects.get(object_id=str(vendor.pk), action_flag=CHANGE)
    assert (entry.user.username, entry.change_message) == ("admin", "Circuit forced open.")
    vendor_circuit(vendor).reset()


def test_a_template_syntax_error_is_shown_with_its_line(admin_client: Client, db) -> None:
    data = {
        "event_type": "order_confirmed", "channel": "sms", "locale": "de", "is_active": "on", "subject": "",
        "body_text": "Hallo {{ customer_name }},\n{% if total %}Summe {{ total }", "body_html": "",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
    }
    response = admin_client.post(reverse("admin:notifications_notificationtemplate_add"), data)
    assert response.status_code == 200
    assert "Line 2: unexpected &#x27;}&#x27;" in response.content.decode()
    assert not NotificationTemplate.objects.filter(locale="de").exists()


def test_saving_a_template_bumps_its_version_and_restore_brings_text_back(admin_client: Client, templates: None) -> None:
    template = NotificationTemplate.objects.get(event_type="order_confirmed", channel="sms", locale="en")
    original_text = template.body_text
    data = {
        "event_type": template.event_type, "channel": "sms", "locale": "en", "is_active": "on", "subject": "",
        "body_text": "New text {{ order_ref }}", "body_html": "",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
    }
    response = admin_client.post(reverse("admin:notifications_notificationtemplate_change", args=[template.pk]), data)
    assert response.status_code == 302
    template.refresh_from_db()
    assert (template.version, template.body_text) == (2, "New text {{ order_ref }}")
    assert LogEntry.objects.filter(object_id=str(template.pk), action_flag=CHANGE).exists()

    first = template.versions.get(version=1)
    admin_client.post(reverse("admin:notifications_notificationtemplate_restore", args=[template.pk, first.pk]))
    template.refresh_from_db()
    assert (template.version, template.body_text) == (3, original_text)


def test_the_preview_renders_each_locale_and_names_the_fallback(admin_client: Client, templates: None) -> None:
    template = NotificationTemplate.objects.get(event_type="order_confirmed", channel="email", locale="en")
    url = reverse("admin:notifications_notificationtemplate_preview", args=[template.pk])
    english = admin_client.get(url).content.decode()
    assert "Order 3F2B8C1E confirmed" in english
    assert "<iframe" in english and "sandbox" in english
    brazilian = admin_client.get(url, {"locale": "pt-BR"}).content.decode()
    assert "Pedido 3F2B8C1E confirmado" in brazilian
    assert "pt-BR falls back to pt" in brazilian


def test_the_overview_page_shows_queues_and_circuits(admin_client: Client, vendors: dict[str, Vendor]) -> None:
    response = admin_client.get(reverse("admin:notifications_overview"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "sms-fallback" in page and "Queues (Celery broker)" in page
    assert set(response.context["queues"]) == {"default", "email", "sms"}
    assert "all processes" in page  # the shared (Redis) hit counters
