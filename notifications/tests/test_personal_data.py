"""Personal data that expires, and the erasure of one person: afterwards a query over every
column of every table finds none of the person's data, while the rows (counts, states,
times), a hash of the address and a suppression (an SMS STOP) survive."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connection, models
from django.utils import timezone
from rest_framework.test import APIClient

from checkout.models import IdempotencyRecord, Order
from checkout.tasks import idempotency_records_purge_task, orders_expire_task
from checkout.tests.factories import VALID_CHECKOUT
from notifications import tasks
from notifications.consent import address_hash, suppression_add
from notifications.dispatch import trigger_dispatch
from notifications.models import DeliveryAttempt, Notification, NotificationTrigger, Suppression, SuppressionSource
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch, run_until_settled
from sandbox.testing import SandboxHandle


def person() -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {"name": f"Ana Zq{tag}", "email": f"Ana.Zq{tag}@Example.com", "phone": f"+4477009{int(tag, 16) % 100000:05d}"}


def traces(*needles: str) -> dict[str, int]:
    """Every text or JSON column of every table holding one of `needles` (any case): table.column -> rows."""
    found: dict[str, int] = {}
    with connection.cursor() as cursor:
        for model in apps.get_models(include_auto_created=True):
            for field in model._meta.concrete_fields:
                if not isinstance(field, (models.CharField, models.TextField, models.JSONField)):
                    continue
                table, column = model._meta.db_table, field.column
                for needle in needles:
                    cursor.execute(
                        f'SELECT count(*) FROM "{table}" WHERE "{column}"::text ILIKE %s',  # noqa: S608 - names from the models
                        [f"%{needle}%"],
                    )
                    count = cursor.fetchone()[0]
                    if count:
                        found[f"{table}.{column}"] = found.get(f"{table}.{column}", 0) + count
    return found


def leave_traces(api: APIClient, who: dict[str, str]) -> None:
    """A checkout (with an Idempotency-Key: its answer is stored), an event through the events
    API, both delivered through the sandbox, and an SMS STOP."""
    customer = {"name": who["name"], "email": who["email"], "phone": who["phone"], "locale": "en"}
    response = api.post("/api/v1/checkouts/", {**VALID_CHECKOUT, "customer": customer}, format="json",
                        HTTP_IDEMPOTENCY_KEY=f"k-{uuid.uuid4().hex}")
    assert response.status_code == 201, response.content
    event = {
        "event_type": "order_confirmed", "recipients": {"email": who["email"].lower(), "sms": who["phone"]},
        "data": {"order_ref": "AB12CD34", "customer_name": who["name"], "currency": "EUR", "total": "1.00", "lines": []},
    }
    assert api.post("/api/v1/events/", event, format="json").status_code == 202
    for trigger in NotificationTrigger.objects.filter(dispatched_at__isnull=True):
        trigger_dispatch(trigger_id=trigger.pk)
    suppression_add(channel="sms", address=who["phone"], source=SuppressionSource.SMS_STOP)


@pytest.mark.django_db
def test_erasing_a_person_leaves_none_of_their_data_in_any_table(
    api: APIClient, vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    ana, bob = person(), person()
    leave_traces(api, ana)
    leave_traces(api, bob)
    before = traces(ana["email"], ana["phone"], ana["name"])
    assert {"checkout_order.customer_email", "notifications_notification.recipient", "notifications_notificationtrigger.payload",
            "checkout_idempotencyrecord.response_body", "notifications_suppression.address"} <= set(before), before
    counts = (Order.objects.count(), Notification.objects.count(), DeliveryAttempt.objects.count(), Suppression.objects.count())

    call_command("erase_personal_data", email=ana["email"].upper(), phone=ana["phone"])

    assert traces(ana["email"], ana["phone"], ana["name"]) == {}
    assert set(traces(bob["email"])) >= {"checkout_order.customer_email", "notifications_notification.recipient"}
    # The rows stay: counts, states and times for operations; the address as a hash.
    assert (Order.objects.count(), Notification.objects.count(), DeliveryAttempt.objects.count(), Suppression.objects.count()) == counts
    sms = Notification.objects.filter(recipient_hash=address_hash(channel="sms", address=ana["phone"]))
    assert sms.count() == 2 and set(sms.values_list("status", flat=True)) == {"sent"}
    # Her STOP survives the erasure: the next SMS to her number is suppressed.
    assert run_until_settled(dispatch(make_trigger(phone=ana["phone"]))["sms"].pk).status == "suppressed"


@pytest.mark.django_db
def test_a_bad_erasure_request_is_refused_and_erases_nothing(api: APIClient, vendors: dict, templates: None, sandbox) -> None:
    ana = person()
    leave_traces(api, ana)
    before = traces(ana["email"])

    for arguments in ({}, {"email": "not-an-address"}, {"phone": "07911 123456"}):
        with pytest.raises(CommandError, match=r"--email|--phone"):
            call_command("erase_personal_data", **arguments)

    assert traces(ana["email"]) == before


@pytest.mark.django_db
def test_personal_data_past_the_retention_period_is_erased_by_the_periodic_tasks(
    api: APIClient, vendors: dict, templates: None, sandbox: SandboxHandle, settings
) -> None:
    old, recent = person(), person()
    leave_traces(api, old)
    long_ago = timezone.now() - timedelta(days=settings.PERSONAL_DATA_RETENTION_DAYS + 1)
    NotificationTrigger.objects.update(created_at=long_ago)
    Notification.objects.update(created_at=long_ago)
    Order.objects.update(created_at=long_ago)
    IdempotencyRecord.objects.update(created_at=long_ago)  # (stored answers live 24 hours)
    leave_traces(api, recent)
    states = dict(Notification.objects.filter(created_at=long_ago).values_list("pk", "status"))
    assert {"personal-data-expire", "orders-expire"} <= set(settings.CELERY_BEAT_SCHEDULE)

    tasks.personal_data_expire()
    orders_expire_task()
    idempotency_records_purge_task()

    # The suppression list is not expired (a STOP must outlive the data); everything else is.
    assert traces(old["email"], old["phone"], old["name"]) == {"notifications_suppression.address": 1}
    assert set(traces(recent["email"], recent["phone"], recent["name"])) >= {
        "checkout_order.customer_email", "notifications_notification.recipient", "notifications_notification.rendered_text",
    }
    kept = Notification.objects.filter(pk__in=states)
    assert dict(kept.values_list("pk", "status")) == states
    assert all(row.recipient_hash and row.sent_at and not row.rendered_text for row in kept)


@pytest.mark.django_db
def test_a_notification_still_waiting_to_be_sent_is_not_sent_after_its_recipient_is_erased(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    ana = person()
    waiting = dispatch(make_trigger(email=ana["email"], phone=ana["phone"], name=ana["name"]))  # created, not sent yet

    call_command("erase_personal_data", phone=ana["phone"])

    for notification in waiting.values():
        assert run_until_settled(notification.pk).status == "failed"
    assert sandbox.control.messages("smtp-primary") == [] and sandbox.control.messages("sms-primary") == []
    assert traces(ana["email"], ana["phone"], ana["name"]) == {}
