"""The notifications app's hand-written SQL, each statement paid for by a measurement.

Everything else goes through the ORM. A statement lives here only when docs/performance.md
shows what it saves (statements per checkout, "What changed in this round"; a send is three
statements, `notification_send`'s query budget), and each one is tested against the ORM call
it stands for (notifications/tests/test_statements.py):

- `notification_claim_returning`: the claim is one UPDATE ... RETURNING (the ORM needs an
  UPDATE and a SELECT), returning the trigger's creation time and whether an attempt's outcome
  is unknown, so a common send reads no attempt history.
- `notification_settle_sent_with_attempt`: completing the attempt and settling the notification `sent` in
  one statement (both or neither).
- `notifications_insert_dispatched`: marking the trigger dispatched and inserting its
  notifications in one statement (the rows already claimed, see lifecycle.py); for a dispatch
  that sends at once, the same statement answers the consent check of each row (`consent_read`'s
  question), one statement less per checkout.
- `trigger_insert`: the trigger's INSERT (and its pg_notify for the worker's listener), which a
  caller composes with its own rows (the checkout's order and lines) into one statement: a
  checkout is one round trip.
- `attempt_insert`: the attempt row written before a vendor call, an INSERT built once
  (`DeliveryAttempt.objects.create` built a compiler per send: 7% of a worker's samples).
- `trigger_read`: the dispatch's read of its trigger, a SELECT built once (the ORM's
  `filter(pk=...).first()` compiled per dispatch: 9% of a worker's samples). A trigger the
  worker's listener dispatches itself is not read again: its claim returns the row
  (`trigger_from_listener_row`), one statement less per checkout.
- `consent_read`: the consent check before sending (is the event marketing, and which
  suppression covers each recipient), one statement for all of a dispatch's sends, built once
  per number of recipients: the ORM query it stands for (an Exists and a Subquery, per send)
  cost about a third of a worker's CPU to compile.

Every statement is built from the models' own metadata and status constants; every value is a
bound parameter.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime
from functools import cache

from django.db import connection, transaction
from django.utils import timezone

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
)
from notifications.row_inserts import Statement, insert_fields, insert_params, rows_insert

CLAIMABLE = (NotificationStatus.PENDING, NotificationStatus.RETRYING)


def notification_claim_returning(*, notification_id: int, now: datetime, lease_until: datetime) -> Notification | None:
    """Claim the notification if it is due (pending/retrying and its time has come) or a dead
    run's lease ran out (sending, lease past): `sending`, leased until `lease_until`, delivered
    once more. Returns the claimed row, with `trigger_created_at` and `had_unknown_outcome`
    set, or None when nothing was claimable."""
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(), {"id": notification_id, "now": now, "lease_until": lease_until})
        row = cursor.fetchone()
    if row is None:
        return None
    notification = Notification.from_db(connection.alias, _notification_columns(), row[:-2])
    notification.trigger_created_at = row[-2]
    notification.had_unknown_outcome = row[-1]
    return notification


@cache
def _notification_columns() -> list[str]:
    return [field.attname for field in Notification._meta.concrete_fields]


@cache
def _claim_sql() -> str:
    table = Notification._meta.db_table
    attempts = DeliveryAttempt._meta.db_table
    triggers = NotificationTrigger._meta.db_table
    returned = ", ".join(f"n.{connection.ops.quote_name(Notification._meta.get_field(name).column)}"
                         for name in _notification_columns())
    claimable = ", ".join(f"'{status}'" for status in CLAIMABLE)
    return f"""
        UPDATE {table} AS n
           SET status = '{NotificationStatus.SENDING}', lease_until = %(lease_until)s,
               delivery_count = n.delivery_count + 1, updated_at = %(now)s
          FROM {triggers} AS t
         WHERE n.id = %(id)s AND t.id = n.trigger_id
           AND ((n.status IN ({claimable}) AND (n.next_attempt_at IS NULL OR n.next_attempt_at <= %(now)s))
                OR (n.status = '{NotificationStatus.SENDING}' AND n.lease_until < %(now)s))
     RETURNING {returned}, t.created_at,
               EXISTS (SELECT 1 FROM {attempts} AS a
                        WHERE a.notification_id = n.id AND a.outcome IN ('{AttemptOutcome.TIMEOUT}', ''))"""  # noqa: S608


def notification_settle_sent_with_attempt(
    *, notification: Notification, attempt_id: int, duration_ms: float, status_code: int | None, message_id: str,
    vendor_id: int, now: datetime, possible_duplicate: bool,
) -> tuple[bool | None, bool]:
    """Complete the attempt (`sent`) and settle the notification `sent`, in one statement,
    unless another run took the notification over (then only the attempt is completed).

    Returns (the notification's `possible_duplicate` as settled, or None when another run holds
    it; whether this late copy flagged a notification another run had already settled `sent`).
    The settled flag is also raised when another attempt of the notification was `sent` with
    another vendor message id: two runs delivered it (`lifecycle.notification_settle_sent`)."""
    with connection.cursor() as cursor:
        cursor.execute(_settle_sent_sql(), {
            "attempt_id": attempt_id, "outcome": AttemptOutcome.SENT, "duration_ms": duration_ms,
            "status_code": status_code, "message_id": message_id, "id": notification.pk,
            "delivery_count": notification.delivery_count, "vendor_id": vendor_id, "now": now,
            "possible_duplicate": possible_duplicate, "attempt_count": notification.attempt_count + 1,
        })
        settled_flagged, flagged_late = cursor.fetchone()
    return settled_flagged, flagged_late


@cache
def _settle_sent_sql() -> str:
    attempts = DeliveryAttempt._meta.db_table
    table = Notification._meta.db_table
    sent, sending = NotificationStatus.SENT, NotificationStatus.SENDING
    # The two UPDATEs of the notification exclude each other (this delivery_count, or another).
    return f"""
        WITH finished AS (
            UPDATE {attempts}
               SET outcome = %(outcome)s, duration_ms = %(duration_ms)s, status_code = %(status_code)s,
                   vendor_message_id = %(message_id)s
             WHERE id = %(attempt_id)s),
        late AS (
            UPDATE {table} SET possible_duplicate = TRUE, updated_at = %(now)s
             WHERE id = %(id)s AND status = '{sent}' AND delivery_count <> %(delivery_count)s
               AND vendor_message_id <> %(message_id)s
            RETURNING id),
        settled AS (
            UPDATE {table}
               SET status = '{sent}', vendor_id = %(vendor_id)s, vendor_message_id = %(message_id)s,
                   sent_at = %(now)s, next_attempt_at = NULL, attempt_count = %(attempt_count)s, last_error = '',
                   lease_until = NULL, updated_at = %(now)s,
                   possible_duplicate = %(possible_duplicate)s OR EXISTS (
                       SELECT 1 FROM {attempts} AS a
                        WHERE a.notification_id = %(id)s AND a.outcome = '{AttemptOutcome.SENT}'
                          AND a.id <> %(attempt_id)s AND a.vendor_message_id <> %(message_id)s)
             WHERE id = %(id)s AND status = '{sending}' AND delivery_count = %(delivery_count)s
            RETURNING possible_duplicate)
        SELECT (SELECT possible_duplicate FROM settled), EXISTS (SELECT 1 FROM late)"""  # noqa: S608


def notifications_insert_dispatched(
    *, trigger_id: int, wanted: list[Notification], address_hashes: list[str] | None = None
) -> list[tuple] | None:
    """Mark the trigger dispatched (now, after the rows' own times) and insert `wanted`, in one statement; returns (id, channel,
    status) of each row inserted, or None when the trigger was dispatched already (nothing is
    written then: the UPDATE, which takes the trigger's row lock so racing dispatches queue
    behind it, feeds the INSERT). Raises IntegrityError when a row exists already (one written
    without a dispatched trigger); inside a caller's transaction a savepoint keeps that from
    breaking it.

    With `address_hashes` (consent.address_hash of each of `wanted`, in order) the statement
    also answers each inserted row's consent check, as `consent_read` would at that moment:
    each tuple then goes on with (whether the event is marketing, the covering suppression's
    source or None). A dispatch that sends at once so needs no statement of its own for it."""
    rows_values = insert_params(wanted, insert_fields(Notification, with_pk=False))  # fills created_at first
    values = [timezone.now(), trigger_id, *rows_values]
    consent = address_hashes is not None and bool(wanted)
    if consent:
        if len(address_hashes) != len(wanted):
            raise ValueError(f"{len(address_hashes)} address hashes for {len(wanted)} notifications")
        values.append(wanted[0].event_type)  # one trigger: one event type
        for notification, digest in zip(wanted, address_hashes, strict=True):
            values += [notification.channel, notification.recipient, digest]
    with transaction.atomic() if connection.in_atomic_block else nullcontext(), connection.cursor() as cursor:
        cursor.execute(_dispatch_sql(len(wanted), consent=consent), values)
        rows = cursor.fetchall()
    if not wanted:
        return [] if rows else None
    return rows or None


@cache
def _dispatch_sql(rows: int, *, consent: bool = False) -> str:
    triggers = NotificationTrigger._meta.db_table
    mark = f"UPDATE {triggers} SET dispatched_at = %s WHERE id = %s AND dispatched_at IS NULL RETURNING id"  # noqa: S608
    if rows == 0:
        return mark
    fields = insert_fields(Notification, with_pk=False)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    # Typed placeholders (a NULL in a VALUES list has no type of its own), without a length:
    # a cast to varchar(n) would cut a long value silently; the column's own limit rejects it.
    row = "(" + ", ".join(f"%s::{field.cast_db_type(connection).split('(')[0]}" for field in fields) + ")"
    insert = f"""
        INSERT INTO {Notification._meta.db_table} ({columns})
        SELECT * FROM (VALUES {", ".join([row] * rows)}) AS wanted
         WHERE EXISTS (SELECT 1 FROM marked)"""  # noqa: S608
    if not consent:
        return f"WITH marked AS ({mark}) {insert} RETURNING id, channel, status"
    addresses = ", ".join(["(%s::varchar, %s::varchar, %s::varchar)"] * rows)
    return f"""
        WITH marked AS ({mark}), inserted AS ({insert} RETURNING id, channel, recipient, status)
        SELECT i.id, i.channel, i.status, m.marketing, {_suppression_source_sql()}
          FROM inserted AS i
         CROSS JOIN ({_marketing_sql()}) AS m
          JOIN (VALUES {addresses}) AS w (channel, recipient, address_hash)
            ON w.channel = i.channel AND w.recipient = i.recipient"""  # noqa: S608


def attempt_insert(attempt: DeliveryAttempt) -> DeliveryAttempt:
    """Insert the unsaved attempt as `save()` would (it commits on its own outside a
    transaction), and give it its id; returns it."""
    sql, params = rows_insert([attempt], returning="id")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        attempt.pk = cursor.fetchone()[0]
    attempt._state.adding, attempt._state.db = False, connection.alias
    return attempt


def trigger_read(*, trigger_id: int) -> NotificationTrigger | None:
    """The trigger with this id, as the ORM would load it, or None."""
    with connection.cursor() as cursor:
        cursor.execute(_trigger_read_sql(), [trigger_id])
        row = cursor.fetchone()
    if row is None:
        return None
    values = [field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
              for field, value in zip(NotificationTrigger._meta.concrete_fields, row, strict=True)]
    return NotificationTrigger.from_db(connection.alias, _trigger_columns(), values)


def trigger_from_listener_row(row: tuple) -> NotificationTrigger:
    """The trigger a claim of the trigger listener returned (every column, in the model's order:
    trigger_listener._returned_columns_sql; on its own psycopg connection, which decodes JSON
    itself), as the ORM would load it."""
    return NotificationTrigger.from_db(connection.alias, _trigger_columns(), list(row))


@cache
def _trigger_columns() -> list[str]:
    return [field.attname for field in NotificationTrigger._meta.concrete_fields]


@cache
def trigger_columns_sql() -> str:
    """Every column of a trigger, in the order `trigger_read` and `trigger_from_listener_row` expect."""
    return ", ".join(connection.ops.quote_name(field.column) for field in NotificationTrigger._meta.concrete_fields)


@cache
def _trigger_read_sql() -> str:
    return f"SELECT {trigger_columns_sql()} FROM {NotificationTrigger._meta.db_table} WHERE id = %s"  # noqa: S608


def consent_read(*, event_type: str, addresses: list[tuple[str, str]]) -> tuple[bool, list[str | None]]:
    """Whether `event_type` is a marketing event, and for each (channel, address_hash) of
    `addresses`, in order, the source of the suppression that covers it for that event, or
    None: scope `all` covers every event, scope `marketing` only marketing ones; `all` wins
    when both match. One statement, no writes, however many addresses (one dispatch's sends)."""
    if not addresses:
        return False, []
    params: list = [event_type]
    for channel, digest in addresses:
        params += [channel, digest]
    with connection.cursor() as cursor:
        cursor.execute(_consent_sql(len(addresses)), params)
        rows = cursor.fetchall()
    marketing = bool(rows[0][1]) if rows else False
    return marketing, [source for _, _, source in sorted(rows)]


@cache
def _consent_sql(addresses: int) -> str:
    wanted = ", ".join(f"({position}, %s::varchar, %s::varchar)" for position in range(addresses))
    return f"""
        SELECT w.position, m.marketing, {_suppression_source_sql()}
          FROM ({_marketing_sql()}) AS m
         CROSS JOIN (VALUES {wanted}) AS w (position, channel, address_hash)"""  # noqa: S608


def _marketing_sql() -> str:
    """One row, `marketing`: whether the event type named by the parameter is a marketing one."""
    return f"""SELECT EXISTS (SELECT 1 FROM {EventType._meta.db_table}
                              WHERE name = %s AND category = '{EventCategory.MARKETING}') AS marketing"""  # noqa: S608


def _suppression_source_sql() -> str:
    """The source of the suppression covering `w`'s (channel, address_hash) for an event that
    is marketing or not (`m.marketing`), or NULL: scope `all` covers every event, scope
    `marketing` only marketing ones; `all` wins when both match."""
    return f"""(SELECT s.source FROM {Suppression._meta.db_table} AS s
                 WHERE s.channel = w.channel AND s.address_hash = w.address_hash
                   AND (s.scope = '{SuppressionScope.ALL}' OR (s.scope = '{SuppressionScope.MARKETING}' AND m.marketing))
                 ORDER BY s.scope LIMIT 1)"""  # noqa: S608


def trigger_insert(trigger: NotificationTrigger, *, notify: bool) -> Statement:
    """The unsaved trigger's INSERT ... RETURNING id, for a caller to run as the last part of its
    own statement (`row_inserts.rows_insert_before`); fills `created_at` as `save()` would.

    `notify`: the same statement also runs `pg_notify(TRIGGER_CHANNEL, id)` (a data-modifying
    CTE feeds it), which PostgreSQL delivers to the worker's listener on COMMIT and never for a
    statement or transaction that rolls back. The id stays the result's first column."""
    insert_sql, params = rows_insert([trigger], returning="id")
    if not notify:
        return insert_sql, params
    return f"WITH trigger_written AS ({insert_sql}) {_TRIGGER_NOTIFY_SELECT}", [*params, TRIGGER_CHANNEL]


def trigger_notify(*, trigger_id: int) -> None:
    """Notify the listener of a trigger written by the ORM (`save()`), in the caller's
    transaction: delivered when that commits (at once outside a transaction)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [TRIGGER_CHANNEL, str(trigger_id)])


# The channel the trigger's INSERT notifies and the worker's listener LISTENs on (per database).
TRIGGER_CHANNEL = "beacon_trigger_committed"
_TRIGGER_NOTIFY_SELECT = "SELECT id, pg_notify(%s, id::text) FROM trigger_written"
