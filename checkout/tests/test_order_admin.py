"""Orders in the operator's admin show amounts as their customer read them, and notifications
about an order link to it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from notifications.models import Notification, NotificationStatus, NotificationTrigger
from notifications.services import trigger_publish

NBSP = "\xa0"


def order_placed(api: APIClient, *, quantity: int, unit_price: str) -> dict:
    """A paid checkout in BRL by a pt-BR customer, as the API answered it."""
    return api.post(
        "/api/v1/checkouts/",
        {
            "customer": {"name": "Ana", "email": "ana@example.com", "phone": "+5511987654321", "locale": "pt-BR"},
            "lines": [{"sku": "MUG", "name": "Mug", "quantity": quantity, "unit_price": unit_price}],
            "currency": "BRL",
            "payment_token": "tok_ok",
        },
        format="json",
    ).json()


@pytest.mark.django_db
def test_order_list_and_page_show_amounts_in_the_customer_locale(admin_client: Client, api: APIClient) -> None:
    order = order_placed(api, quantity=2, unit_price="4999.5")

    listing = admin_client.get("/admin/checkout/order/").content.decode()
    page = admin_client.get(f"/admin/checkout/order/{order['id']}/change/").content.decode()

    assert f"R${NBSP}9.999,00" in listing
    assert f"R${NBSP}9.999,00" in page  # the total and the line total
    assert f"R${NBSP}4.999,50" in page  # the unit price
    assert "9999.000" not in page


def _notification_about(trigger: NotificationTrigger) -> Notification:
    return Notification.objects.create(
        trigger=trigger, event_type=trigger.event_type, channel="email", recipient="ana@example.com", locale="en",
        status=NotificationStatus.SENT, template_version="test", rendered_text="Hello",
    )


@pytest.mark.django_db
def test_a_notification_about_an_order_links_to_the_orders_admin_page(admin_client: Client, api: APIClient) -> None:
    order = order_placed(api, quantity=1, unit_price="10.00")
    about_order = _notification_about(NotificationTrigger.objects.get(subject_ref=f"order:{order['id']}"))
    about_event = _notification_about(
        trigger_publish(event_type="shipment_sent", locale="en", payload={}, recipients={"email": "ana@example.com"},
                        subject_ref="event:7:0b1c2d3e-aaaa-bbbb-cccc-000000000000")
    )

    listing = admin_client.get(reverse("admin:notifications_notification_changelist")).content.decode()
    page = admin_client.get(reverse("admin:notifications_notification_change", args=[about_order.pk])).content.decode()
    event_page = admin_client.get(reverse("admin:notifications_notification_change", args=[about_event.pk])).content.decode()

    order_link = f'<a href="/admin/checkout/order/{order["id"]}/change/">{order["id"][:8]}</a>'
    assert order_link in listing
    assert order_link in page
    assert "event:7:0b1c2d3e-aaaa-bbbb-cccc-000000000000" in event_page
    assert ">0b1c2d3e</a>" not in event_page  # an event's subject has no admin page to link to
