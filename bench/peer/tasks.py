"""The notification task as the tutorials write it: Celery's defaults, `autoretry_for`."""

from __future__ import annotations

import smtplib

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from bench.peer.models import Order


def twilio_client() -> Client:
    """The official client, pointed at the sandbox's Twilio API instead of api.twilio.com."""
    client = Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN)
    client.api.base_url = settings.TWILIO_API_URL
    return client


@shared_task(autoretry_for=(smtplib.SMTPException, TwilioException, OSError), retry_backoff=True, max_retries=5)
def send_order_notifications(order_id) -> None:
    order = Order.objects.get(id=order_id)
    text = render_to_string("peer/order_confirmation.txt", {"order": order, "lines": order.lines.all()})
    send_mail("Your order", text, None, [order.customer_email])
    twilio_client().messages.create(to=order.customer_phone, from_=settings.TWILIO_FROM, body=text[:1600])
