"""Each hand-written statement of checkout/statements.py writes and reads what the ORM call it
stands for would."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db import DataError, transaction
from django.forms.models import model_to_dict
from django.utils import timezone

from checkout.api_keys import api_client_create
from checkout.models import ApiClient, Order, OrderLine, OrderStatus
from checkout.statements import api_client_by_prefix, order_insert_with
from notifications.models import NotificationTrigger
from notifications.statements import trigger_insert

pytestmark = pytest.mark.django_db


def _order(client: ApiClient, **changes: object) -> tuple[Order, list[OrderLine]]:
    order = Order(client=client, status=OrderStatus.PAID, currency="EUR", total=Decimal("47.300"),
                  customer_name="Ana", customer_email="ana@example.com", customer_phone="+447911123456",
                  customer_locale="pt-BR", payment_reference="pay_1", **changes)
    lines = [OrderLine(order=order, sku="MUG", name="Mug", quantity=2, unit_price=Decimal("10.000"),
                       line_total=Decimal("20.000")),
             OrderLine(order=order, sku="TEA", name="Tea", quantity=1, unit_price=Decimal("27.300"),
                       line_total=Decimal("27.300"))]
    return order, lines


RELAY_AFTER = timezone.now()


def _trigger() -> NotificationTrigger:
    return NotificationTrigger(event_type="order_confirmed", locale="pt-BR", payload={"order_ref": "AB12"},
                               recipients={"email": "ana@example.com"}, relay_after=RELAY_AFTER)


def _without(row: object, *names: str) -> dict:
    return {name: value for name, value in model_to_dict(row).items() if name not in {"id", *names}}


def test_the_order_statement_writes_what_save_writes(api_client_with_key: tuple[ApiClient, str]) -> None:
    client, _ = api_client_with_key
    (order, lines), (orm_order, orm_lines) = _order(client), _order(client)
    trigger, orm_trigger = _trigger(), _trigger()

    trigger_id = order_insert_with(order=order, lines=lines, final=trigger_insert(trigger, notify=True))
    orm_order.save()
    for line in orm_lines:
        line.save()
    orm_trigger.save()

    stored = Order.objects.get(pk=order.pk)
    assert _without(stored, "created_at") == _without(Order.objects.get(pk=orm_order.pk), "created_at")
    ours = OrderLine.objects.filter(order=order).order_by("sku")
    theirs = OrderLine.objects.filter(order=orm_order).order_by("sku")
    assert [_without(line, "order") for line in ours] == [_without(line, "order") for line in theirs]
    assert _without(NotificationTrigger.objects.get(pk=trigger_id), "created_at") == _without(
        NotificationTrigger.objects.get(pk=orm_trigger.pk), "created_at"
    )
    # The instances are saved ones afterwards, as after save(): their created_at is the stored one.
    assert not order._state.adding and stored.created_at == order.created_at


def test_the_order_statement_writes_nothing_when_one_row_is_refused(api_client_with_key: tuple[ApiClient, str]) -> None:
    client, _ = api_client_with_key
    order, lines = _order(client)
    lines[1].sku = "X" * 65  # over the column's limit

    with pytest.raises(DataError), transaction.atomic():
        order_insert_with(order=order, lines=lines, final=trigger_insert(_trigger(), notify=True))

    assert not Order.objects.filter(pk=order.pk).exists()
    assert not NotificationTrigger.objects.filter(recipients__email="ana@example.com").exists()


def test_the_api_key_lookup_finds_what_the_orm_finds() -> None:
    active, _ = api_client_create(name=f"shop-{uuid.uuid4().hex[:8]}")
    revoked, _ = api_client_create(name=f"shop-{uuid.uuid4().hex[:8]}")
    ApiClient.objects.filter(pk=revoked.pk).update(is_active=False)

    for prefix in (active.key_prefix, revoked.key_prefix, "nosuchpr"):
        expected = ApiClient.objects.filter(key_prefix=prefix, is_active=True).first()
        found = api_client_by_prefix(prefix)
        assert (model_to_dict(found) if found else None) == (model_to_dict(expected) if expected else None)
    assert api_client_by_prefix(active.key_prefix).pk == active.pk
    assert api_client_by_prefix(revoked.key_prefix) is None
