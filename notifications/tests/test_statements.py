"""Each hand-written statement of notifications/statements.py writes and reads what the ORM call
it stands for would: the same statement applied to one row and the ORM to its twin leave equal
rows (identity columns aside)."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from django.db import IntegrityError, connection
from django.db.models import Exists, F, Q
from django.forms.models import model_to_dict
from django.utils import timezone

from harness.database import current_database_url
from notifications import statements
from notifications.consent import address_hash
from notifications.models import (
    AttemptOutcome,
    DeliveryAttempt,
    EventCategory,
    EventType,
    Notification,
    NotificationStatus,
    NotificationTrigger,
    Suppression,
    SuppressionScope,
    SuppressionSource,
    Vendor,
)
from notifications.row_inserts import rows_insert_before

pytestmark = pytest.mark.django_db

# Columns that differ between twins by construction (their identity, what ties them to their own
# trigger, or the moment each row was inserted).
IDENTITY = {"id", "public_id", "trigger", "created_at"}


def _trigger(**fields: object) -> NotificationTrigger:
    return NotificationTrigger.objects.create(
        event_type="order_confirmed", locale="en", payload={"order_ref": "AB12CD34"},
        recipients={"email": "ana@example.com"}, relay_after=timezone.now(), **fields,
    )


def _notification(trigger: NotificationTrigger, **fields: object) -> Notification:
    defaults = {"event_type": "order_confirmed", "channel": "email", "recipient": "ana@example.com", "locale": "en",
                "rendered_text": "Thanks", "request_id": "req-1"}
    return Notification.objects.create(trigger=trigger, **{**defaults, **fields})


def _twins(**fields: object) -> tuple[Notification, Notification]:
    return _notification(_trigger(), **fields), _notification(_trigger(), **fields)


def _row(model, pk, *, without=IDENTITY) -> dict:
    return {name: value for name, value in model_to_dict(model.objects.get(pk=pk)).items() if name not in without}


def _claim_with_orm(notification_id: int, *, now, lease_until) -> int:
    """What the claim statement stands for, in the ORM (an UPDATE, and a SELECT to read it)."""
    claimable = Q(status__in=statements.CLAIMABLE) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    lease_lost = Q(status=NotificationStatus.SENDING, lease_until__lt=now)
    return Notification.objects.filter(claimable | lease_lost, pk=notification_id).update(
        status=NotificationStatus.SENDING, lease_until=lease_until, delivery_count=F("delivery_count") + 1,
        updated_at=now,
    )


@pytest.mark.parametrize("state", [
    {"status": NotificationStatus.PENDING},
    {"status": NotificationStatus.RETRYING, "attempt_count": 2, "next_attempt_at": timezone.now() - timedelta(seconds=5)},
    {"status": NotificationStatus.SENDING, "delivery_count": 1, "lease_until": timezone.now() - timedelta(seconds=1)},
])
def test_the_claim_statement_writes_and_returns_what_the_orm_claim_gives(state: dict) -> None:
    by_statement, by_orm = _twins(**state)
    now, lease_until = timezone.now(), timezone.now() + timedelta(seconds=30)

    claimed = statements.notification_claim_returning(notification_id=by_statement.pk, now=now, lease_until=lease_until)
    assert _claim_with_orm(by_orm.pk, now=now, lease_until=lease_until) == 1

    assert _row(Notification, by_statement.pk) == _row(Notification, by_orm.pk)
    assert _row(Notification, by_statement.pk)["status"] == NotificationStatus.SENDING
    # What it returns is the row as the ORM reads it after the claim, plus its trigger's time.
    assert model_to_dict(claimed) == model_to_dict(Notification.objects.get(pk=by_statement.pk))
    assert claimed.trigger_created_at == by_statement.trigger.created_at
    assert claimed.had_unknown_outcome is False


@pytest.mark.parametrize("state", [
    {"status": NotificationStatus.RETRYING, "next_attempt_at": timezone.now() + timedelta(minutes=5)},
    {"status": NotificationStatus.SENDING, "delivery_count": 1, "lease_until": timezone.now() + timedelta(minutes=5)},
    {"status": NotificationStatus.SENT},
    {"status": NotificationStatus.SUPPRESSED},
])
def test_the_claim_statement_refuses_what_the_orm_claim_refuses(state: dict) -> None:
    by_statement, by_orm = _twins(**state)
    before = _row(Notification, by_statement.pk)
    now = timezone.now()

    assert statements.notification_claim_returning(notification_id=by_statement.pk, now=now, lease_until=now) is None
    assert _claim_with_orm(by_orm.pk, now=now, lease_until=now) == 0

    assert _row(Notification, by_statement.pk) == before == _row(Notification, by_orm.pk)


@pytest.mark.parametrize("outcome", [AttemptOutcome.TIMEOUT, ""])
def test_the_claim_statement_says_an_attempt_had_an_unknown_outcome_as_the_orm_would(outcome: str) -> None:
    notification = _notification(_trigger())
    DeliveryAttempt.objects.create(notification=notification, started_at=timezone.now(), outcome=outcome)
    now = timezone.now()

    claimed = statements.notification_claim_returning(notification_id=notification.pk, now=now, lease_until=now)

    unknown = DeliveryAttempt.objects.filter(notification=notification, outcome__in=[AttemptOutcome.TIMEOUT, ""]).exists()
    assert claimed.had_unknown_outcome is unknown is True


def test_the_settle_sent_statement_writes_what_the_orm_updates_write() -> None:
    vendor = Vendor.objects.create(name="smtp-test", channel="email", adapter="smtp")
    claimed = {"status": NotificationStatus.SENDING, "delivery_count": 1, "attempt_count": 1,
               "lease_until": timezone.now() + timedelta(seconds=30), "last_error": "earlier round"}
    by_statement, by_orm = _twins(**claimed)
    started = timezone.now()
    attempts = [DeliveryAttempt.objects.create(notification=row, vendor=vendor, started_at=started)
                for row in (by_statement, by_orm)]
    now = timezone.now()

    statements.notification_settle_sent_with_attempt(
        notification=by_statement, attempt_id=attempts[0].pk, duration_ms=12.5, status_code=250, message_id="m-1",
        vendor_id=vendor.pk, now=now, possible_duplicate=True,
    )
    DeliveryAttempt.objects.filter(pk=attempts[1].pk).update(
        outcome=AttemptOutcome.SENT, duration_ms=12.5, status_code=250, vendor_message_id="m-1"
    )
    Notification.objects.filter(pk=by_orm.pk, status=NotificationStatus.SENDING, delivery_count=1).update(
        status=NotificationStatus.SENT, vendor=vendor, vendor_message_id="m-1", sent_at=now, next_attempt_at=None,
        possible_duplicate=True, attempt_count=2, last_error="", lease_until=None, updated_at=now,
    )

    assert _row(Notification, by_statement.pk) == _row(Notification, by_orm.pk)
    assert _row(Notification, by_statement.pk)["status"] == NotificationStatus.SENT
    assert _row(DeliveryAttempt, attempts[0].pk, without={"id", "notification"}) == _row(
        DeliveryAttempt, attempts[1].pk, without={"id", "notification"}
    )


def test_the_settle_sent_statement_completes_only_the_attempt_of_a_run_that_lost_its_notification() -> None:
    vendor = Vendor.objects.create(name="smtp-test", channel="email", adapter="smtp")
    notification = _notification(_trigger(), status=NotificationStatus.SENDING, delivery_count=2)
    attempt = DeliveryAttempt.objects.create(notification=notification, vendor=vendor, started_at=timezone.now())
    stale_run = Notification(pk=notification.pk, delivery_count=1, attempt_count=0)
    before = _row(Notification, notification.pk)

    statements.notification_settle_sent_with_attempt(
        notification=stale_run, attempt_id=attempt.pk, duration_ms=3.0, status_code=None, message_id="m-2",
        vendor_id=vendor.pk, now=timezone.now(), possible_duplicate=False,
    )

    assert _row(Notification, notification.pk) == before
    assert DeliveryAttempt.objects.get(pk=attempt.pk).outcome == AttemptOutcome.SENT


def _wanted(trigger: NotificationTrigger, *, lease_until) -> list[Notification]:
    return [
        Notification(trigger=trigger, event_type="order_confirmed", channel="email", recipient="ana@example.com",
                     locale="pt-BR", rendered_subject="Pedido", rendered_text="Obrigado", rendered_html="<p>Obrigado</p>",
                     template_version="v3", request_id="req-9"),
        Notification(trigger=trigger, event_type="order_confirmed", channel="sms", recipient="+447911123456",
                     locale="pt-BR", rendered_text="Obrigado", template_version="v2", request_id="req-9",
                     status=NotificationStatus.SENDING, delivery_count=1,
                     lease_until=lease_until),
    ]


def test_the_dispatch_statement_writes_what_bulk_create_and_an_update_write() -> None:
    by_statement, by_orm = _trigger(), _trigger()
    lease_until = timezone.now() + timedelta(seconds=10)

    created = statements.notifications_insert_dispatched(
        trigger_id=by_statement.pk, wanted=_wanted(by_statement, lease_until=lease_until)
    )
    Notification.objects.bulk_create(_wanted(by_orm, lease_until=lease_until))
    NotificationTrigger.objects.filter(pk=by_orm.pk, dispatched_at__isnull=True).update(dispatched_at=timezone.now())

    ours = Notification.objects.filter(trigger=by_statement).order_by("channel")
    theirs = Notification.objects.filter(trigger=by_orm).order_by("channel")
    assert [_row(Notification, row.pk, without=IDENTITY | {"updated_at"}) for row in ours] == [
        _row(Notification, row.pk, without=IDENTITY | {"updated_at"}) for row in theirs
    ]
    assert sorted(created) == sorted((row.pk, row.channel, row.status) for row in ours)
    assert NotificationTrigger.objects.get(pk=by_statement.pk).dispatched_at is not None


def test_the_dispatch_statement_writes_nothing_for_a_trigger_dispatched_already() -> None:
    trigger = _trigger(dispatched_at=timezone.now())

    assert statements.notifications_insert_dispatched(trigger_id=trigger.pk, wanted=_wanted(trigger, lease_until=None)) is None
    assert statements.notifications_insert_dispatched(trigger_id=trigger.pk, wanted=[]) is None
    assert not Notification.objects.filter(trigger=trigger).exists()


def test_the_dispatch_statement_marks_a_trigger_without_notifications_dispatched() -> None:
    trigger = _trigger()

    assert statements.notifications_insert_dispatched(trigger_id=trigger.pk, wanted=[]) == []
    assert NotificationTrigger.objects.get(pk=trigger.pk).dispatched_at is not None


def test_the_dispatch_statement_is_refused_whole_when_a_row_exists_already() -> None:
    trigger = _trigger()
    _notification(trigger, channel="sms", recipient="+447911123456")

    with pytest.raises(IntegrityError):
        statements.notifications_insert_dispatched(trigger_id=trigger.pk, wanted=_wanted(trigger, lease_until=None))

    assert NotificationTrigger.objects.get(pk=trigger.pk).dispatched_at is None
    assert Notification.objects.filter(trigger=trigger).count() == 1


def test_the_trigger_insert_writes_what_save_writes() -> None:
    fields = {"event_type": "payment_failed", "locale": "pt-BR", "payload": {"total": "47.30", "lines": [1, 2]},
              "recipients": {"email": "ana@example.com", "sms": ""}, "subject_ref": "order:1", "request_id": "req-3",
              "relay_after": timezone.now()}
    by_statement, by_orm = NotificationTrigger(**fields), NotificationTrigger(**fields)

    sql, params = rows_insert_before([], statements.trigger_insert(by_statement, notify=True))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted_id = cursor.fetchone()[0]
    by_orm.save()

    assert _row(NotificationTrigger, inserted_id) == _row(NotificationTrigger, by_orm.pk)
    assert by_statement.created_at is not None  # filled as save() fills it


def _consent_with_orm(*, event_type: str, channel: str, address_hash: str) -> tuple[bool, str | None]:
    """What the consent statement stands for, in the ORM (an Exists and a Subquery)."""
    marketing = EventType.objects.filter(name=event_type, category=EventCategory.MARKETING)
    covering = Suppression.objects.filter(
        Q(scope=SuppressionScope.ALL) | Q(Q(scope=SuppressionScope.MARKETING) & Exists(marketing)),
        channel=channel, address_hash=address_hash,
    ).order_by("scope")
    return marketing.exists(), covering.values_list("source", flat=True).first()


@pytest.mark.parametrize(("category", "scopes", "channel", "expected"), [
    (EventCategory.TRANSACTIONAL, [], "email", (False, None)),
    (EventCategory.TRANSACTIONAL, [SuppressionScope.MARKETING], "email", (False, None)),
    (EventCategory.MARKETING, [SuppressionScope.MARKETING], "email", (True, SuppressionSource.UNSUBSCRIBE)),
    (EventCategory.TRANSACTIONAL, [SuppressionScope.ALL], "email", (False, SuppressionSource.HARD_BOUNCE)),
    (EventCategory.MARKETING, [SuppressionScope.MARKETING, SuppressionScope.ALL], "email", (True, SuppressionSource.HARD_BOUNCE)),
    (EventCategory.TRANSACTIONAL, [SuppressionScope.ALL], "sms", (False, None)),
])
def test_the_consent_statement_answers_what_the_orm_query_answers(category, scopes, channel, expected) -> None:
    EventType.objects.update_or_create(name="spring_sale", defaults={"category": category})
    digest = address_hash(channel="email", address="ana@example.com")
    for scope in scopes:
        source = SuppressionSource.HARD_BOUNCE if scope == SuppressionScope.ALL else SuppressionSource.UNSUBSCRIBE
        Suppression.objects.create(channel="email", address_hash=digest, scope=scope, source=source)
    hashed = address_hash(channel=channel, address="ana@example.com") if channel != "email" else digest

    marketing, (source,) = statements.consent_read(event_type="spring_sale", addresses=[(channel, hashed)])

    assert (marketing, source) == expected
    assert (marketing, source) == _consent_with_orm(event_type="spring_sale", channel=channel, address_hash=hashed)
    assert statements.consent_read(event_type="no_such_event", addresses=[(channel, hashed)])[0] is False


def test_the_consent_statement_answers_for_several_addresses_in_their_order() -> None:
    EventType.objects.update_or_create(name="spring_sale", defaults={"category": EventCategory.MARKETING})
    stopped, unsubscribed, free = (address_hash(channel=channel, address=address) for channel, address in (
        ("sms", "+447911123456"), ("email", "ana@example.com"), ("email", "bo@example.com")))
    Suppression.objects.create(channel="sms", address_hash=stopped, scope=SuppressionScope.ALL, source=SuppressionSource.SMS_STOP)
    Suppression.objects.create(channel="email", address_hash=unsubscribed, scope=SuppressionScope.MARKETING,
                               source=SuppressionSource.UNSUBSCRIBE)
    addresses = [("email", free), ("sms", stopped), ("email", unsubscribed)]

    answer = statements.consent_read(event_type="spring_sale", addresses=addresses)

    assert answer == (True, [None, SuppressionSource.SMS_STOP, SuppressionSource.UNSUBSCRIBE])
    assert answer[1] == [_consent_with_orm(event_type="spring_sale", channel=channel, address_hash=digest)[1]
                         for channel, digest in addresses]


@pytest.mark.parametrize("category", [EventCategory.MARKETING, EventCategory.TRANSACTIONAL])
def test_the_dispatch_statement_answers_each_rows_consent_as_the_consent_statement_does(category) -> None:
    EventType.objects.update_or_create(name="order_confirmed", defaults={"category": category})
    email_hash, sms_hash = (address_hash(channel="email", address="ana@example.com"),
                            address_hash(channel="sms", address="+447911123456"))
    Suppression.objects.create(channel="sms", address_hash=sms_hash, scope=SuppressionScope.ALL, source=SuppressionSource.SMS_STOP)
    Suppression.objects.create(channel="email", address_hash=email_hash, scope=SuppressionScope.MARKETING,
                               source=SuppressionSource.UNSUBSCRIBE)
    trigger = _trigger()
    wanted = _wanted(trigger, lease_until=None)
    hashes = [address_hash(channel=n.channel, address=n.recipient) for n in wanted]

    created = statements.notifications_insert_dispatched(trigger_id=trigger.pk, wanted=wanted, address_hashes=hashes)

    marketing, sources = statements.consent_read(event_type="order_confirmed",
                                                 addresses=[(n.channel, h) for n, h in zip(wanted, hashes, strict=True)])
    expected = {n.channel: (marketing, source) for n, source in zip(wanted, sources, strict=True)}
    assert {channel: (is_marketing, source) for _, channel, _, is_marketing, source in created} == expected
    assert expected["sms"] == (category == EventCategory.MARKETING, SuppressionSource.SMS_STOP)
    assert expected["email"][1] == (SuppressionSource.UNSUBSCRIBE if category == EventCategory.MARKETING else None)
    rows = Notification.objects.filter(trigger=trigger)
    assert sorted((pk, channel, status) for pk, channel, status, *_ in created) == sorted(
        (row.pk, row.channel, row.status) for row in rows)


def test_the_dispatch_statement_wants_one_address_hash_per_row() -> None:
    trigger = _trigger()

    with pytest.raises(ValueError, match="address hashes"):
        statements.notifications_insert_dispatched(trigger_id=trigger.pk, wanted=_wanted(trigger, lease_until=None),
                                                   address_hashes=["only-one"])

    assert NotificationTrigger.objects.get(pk=trigger.pk).dispatched_at is None


def test_the_attempt_insert_writes_what_save_writes() -> None:
    notification = _notification(_trigger())
    vendor = Vendor.objects.filter(channel="email").first() or Vendor.objects.create(
        name="mail", channel="email", adapter="smtp", priority=1)
    started = timezone.now()
    by_statement = DeliveryAttempt(notification=notification, vendor=vendor, started_at=started)
    by_orm = DeliveryAttempt.objects.create(notification=notification, vendor=vendor, started_at=started)

    inserted = statements.attempt_insert(by_statement)

    assert inserted.pk is not None and inserted.pk != by_orm.pk
    assert _row(DeliveryAttempt, inserted.pk, without={"id"}) == _row(DeliveryAttempt, by_orm.pk, without={"id"})
    DeliveryAttempt.objects.filter(pk=inserted.pk).update(outcome=AttemptOutcome.SENT)  # a saved row, as create() gives
    assert DeliveryAttempt.objects.get(pk=inserted.pk).outcome == AttemptOutcome.SENT


@pytest.mark.django_db(transaction=True)  # the row must be visible to a second connection
def test_a_trigger_row_from_the_listeners_own_connection_loads_what_the_orm_loads() -> None:
    """The worker's listener claims on a psycopg connection of its own, which decodes JSON
    itself (Django's decodes it in the field); its dispatch threads start from that row."""
    trigger = NotificationTrigger.objects.create(
        event_type="order_confirmed", locale="pt-BR", relay_after=timezone.now(), handed_over_at=timezone.now(),
        request_id="req-8", subject_ref="order:AB12", dispatch_attempts=2, last_error="timeout",
        payload={"order_ref": "AB12", "total": "19.00", "lines": [{"qty": 2, "price": 2.5}, None], "name": "Zoë ✓"},
        recipients={"email": "ana@example.com", "sms": "+15005550006"},
    )
    table = NotificationTrigger._meta.db_table
    with psycopg.connect(current_database_url(), autocommit=True) as listeners:
        row = listeners.execute(f"SELECT {statements.trigger_columns_sql()} FROM {table} WHERE id = %s",  # noqa: S608
                                [trigger.pk]).fetchone()

    loaded = statements.trigger_from_listener_row(row)

    def values(instance: NotificationTrigger) -> dict:
        return {field.attname: getattr(instance, field.attname) for field in NotificationTrigger._meta.concrete_fields}

    assert values(loaded) == values(NotificationTrigger.objects.get(pk=trigger.pk))
    assert loaded.pk == trigger.pk and not loaded._state.adding


def test_the_trigger_read_loads_what_the_orm_loads() -> None:
    trigger = _trigger(request_id="req-7")

    read = statements.trigger_read(trigger_id=trigger.pk)

    assert model_to_dict(read) == model_to_dict(NotificationTrigger.objects.get(pk=trigger.pk))
    assert read.pk == trigger.pk and not read._state.adding
    assert statements.trigger_read(trigger_id=trigger.pk + 1000) is None
