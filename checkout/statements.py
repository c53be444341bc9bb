"""The checkout app's hand-written SQL, each statement paid for by a measurement.

- `order_insert_with`: the order, its lines and the notification trigger in one INSERT
  statement, atomic by itself, so a checkout is one round trip and needs no BEGIN/COMMIT
  (docs/performance.md: "what is left is the API key's lookup and the checkout's INSERT in the
  web"). The notifications app hands over the trigger's part; this module composes the rest.
- `api_client_by_prefix`: the API key's lookup, on every API request (docs/performance.md: the
  API key's lookup 7-8% of the web; building the ORM query for it cost a tenth of a checkout's
  web CPU, commit 76f9fdb).

Each is tested against the ORM call it stands for (checkout/tests/test_statements.py).
Built from the models' own metadata; every value is a bound parameter.
"""

from __future__ import annotations

from functools import cache

from django.db import connection

from checkout.models import ApiClient, Order, OrderLine
from notifications.services import Statement, rows_insert_before


def order_insert_with(*, order: Order, lines: list[OrderLine], final: Statement) -> int:
    """Insert the unsaved `order` and `lines`, then run `final` (an INSERT ... RETURNING id, the
    trigger's), in one statement; returns what `final` returns. Every row is written, or none.
    The order and lines are saved instances afterwards, as after `save()`."""
    sql, params = rows_insert_before([order, *lines], final)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        returned = cursor.fetchone()[0]
    for row in (order, *lines):
        row._state.adding, row._state.db = False, connection.alias
    return returned


def api_client_by_prefix(prefix: str) -> ApiClient | None:
    """`ApiClient.objects.filter(key_prefix=prefix, is_active=True).first()` in one prepared
    statement. key_prefix is unique, so there is one row at most."""
    with connection.cursor() as cursor:
        cursor.execute(_client_by_prefix_sql(), [prefix])
        row = cursor.fetchone()
    return ApiClient.from_db(connection.alias, _client_columns(), row) if row else None


@cache
def _client_columns() -> list[str]:
    return [field.attname for field in ApiClient._meta.concrete_fields]


@cache
def _client_by_prefix_sql() -> str:
    columns = ", ".join(connection.ops.quote_name(ApiClient._meta.get_field(name).column) for name in _client_columns())
    table = connection.ops.quote_name(ApiClient._meta.db_table)
    return f"SELECT {columns} FROM {table} WHERE key_prefix = %s AND is_active"  # noqa: S608
