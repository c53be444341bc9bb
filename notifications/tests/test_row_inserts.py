"""row_inserts builds the INSERT that `save()` would run, as composable SQL text."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db import DataError, connection, transaction
from django.forms.models import model_to_dict
from django.utils import timezone
from django.utils.translation import gettext_lazy
from psycopg.types.json import Jsonb

from checkout.models import ApiClient, Order, OrderStatus
from notifications.models import NotificationTrigger
from notifications.row_inserts import insert_fields, insert_params, rows_insert, rows_insert_before

pytestmark = pytest.mark.django_db


RELAY_AFTER = timezone.now()


def _trigger(**changes: object) -> NotificationTrigger:
    fields = {"event_type": "order_confirmed", "locale": "en", "payload": {"a": [1, "ü"]},
              "recipients": {"sms": "+447911123456"}, "relay_after": RELAY_AFTER, **changes}
    return NotificationTrigger(**fields)


def _run(statement: tuple[str, list]) -> list[tuple]:
    sql, params = statement
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def _stored(model, pk) -> dict:
    return {name: value for name, value in model_to_dict(model.objects.get(pk=pk)).items() if name not in {"id", "created_at"}}


def test_rows_insert_writes_what_save_writes_and_returns_the_assigned_ids() -> None:
    ours, theirs = [_trigger(subject_ref="a"), _trigger(subject_ref="b")], [_trigger(subject_ref="a"), _trigger(subject_ref="b")]

    ids = [row[0] for row in _run(rows_insert(ours, returning="id"))]
    for trigger in theirs:
        trigger.save()

    assert [_stored(NotificationTrigger, pk) for pk in ids] == [_stored(NotificationTrigger, t.pk) for t in theirs]
    assert all(trigger.created_at is not None for trigger in ours)  # auto_now_add filled as save() fills it


def test_rows_insert_writes_a_primary_key_the_instance_already_has(api_client_with_key: tuple[ApiClient, str]) -> None:
    client, _ = api_client_with_key
    order = Order(client=client, status=OrderStatus.PAID, currency="EUR", total=Decimal("1.500"), customer_name="Ana",
                  customer_email="ana@example.com", customer_phone="+447911123456", customer_locale="en")
    key = order.pk

    assert _run(rows_insert([order])) == []

    assert Order.objects.get(pk=key).total == Decimal("1.500")


def test_rows_insert_refuses_instances_of_mixed_models_or_keys(api_client_with_key: tuple[ApiClient, str]) -> None:
    client, _ = api_client_with_key
    order = Order(client=client, status=OrderStatus.PAID, currency="EUR", total=Decimal("1"), customer_name="Ana",
                  customer_email="a@example.com", customer_phone="+1", customer_locale="en")

    with pytest.raises(ValueError, match="one model"):
        rows_insert([_trigger(), order])
    with pytest.raises(ValueError, match="all with a primary key or all without"):
        rows_insert([_trigger(), _trigger(id=10**9)])


def test_rows_insert_before_writes_every_row_then_answers_with_the_final_statement() -> None:
    before = [_trigger(subject_ref=f"before:{uuid.uuid4()}"), _trigger(subject_ref=f"before:{uuid.uuid4()}")]
    final = _trigger(subject_ref="final")

    (final_id,) = _run(rows_insert_before(before, rows_insert([final], returning="id")))[0]

    assert NotificationTrigger.objects.get(pk=final_id).subject_ref == "final"
    assert NotificationTrigger.objects.filter(subject_ref__in=[t.subject_ref for t in before]).count() == 2
    assert rows_insert_before([], ("SELECT 1", [])) == ("SELECT 1", [])


def test_rows_insert_before_writes_nothing_when_one_row_is_refused() -> None:
    ref = f"refused:{uuid.uuid4()}"
    before = [_trigger(subject_ref=ref), _trigger(subject_ref=ref, event_type="x" * 65)]  # over the column's limit

    with pytest.raises(DataError), transaction.atomic():
        _run(rows_insert_before(before, rows_insert([_trigger(subject_ref=ref)], returning="id")))

    assert not NotificationTrigger.objects.filter(subject_ref=ref).exists()


def test_insert_params_prepare_every_value_as_the_fields_own_preparation_does(
    api_client_with_key: tuple[ApiClient, str],
) -> None:
    """The shortcuts (the connection itself, a `str` of a plain text field as it is) give what
    each field's own `pre_save` and `get_db_prep_save` give, for every kind of value the hot
    paths write: lazy text, an empty string, None, decimals, a UUID key, JSON, timestamps."""
    client, _ = api_client_with_key
    order = Order(client=client, status=OrderStatus.PAID, currency="EUR", total=Decimal("12.5"),
                  customer_name=gettext_lazy("Ana"), customer_email="ana@example.com", customer_phone="",
                  customer_locale="en", payment_reference="ch_1", payment_error="")
    trigger = _trigger(subject_ref="order:x", request_id="")

    for instance in (order, trigger):
        fields = insert_fields(type(instance), with_pk=instance.pk is not None)
        ours = insert_params([instance], fields)
        # add=False: the timestamp `auto_now_add` just filled, not a newer one
        django_own = [field.get_db_prep_save(field.pre_save(instance, add=False), connection) for field in fields]
        assert [_comparable(value) for value in ours] == [_comparable(value) for value in django_own]
    assert type(insert_params([order], [Order._meta.get_field("customer_name")])[0]) is str  # lazy text made plain


def _comparable(value: object) -> object:
    """A prepared parameter as something `==` compares by content (psycopg's JSON wrapper
    compares by identity)."""
    return ("json", value.obj) if isinstance(value, Jsonb) else value
