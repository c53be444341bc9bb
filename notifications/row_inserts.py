"""INSERT statements for unsaved model instances, built from the models' own metadata.

What `Model.save()` and `bulk_create()` write (defaults, `auto_now_add`, each field's database
preparation), without building a queryset or a compiler per call, and as SQL text that can be
composed with other statements (the hot paths write several tables in one round trip).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from itertools import groupby

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import CharField, EmailField, Model, SlugField, TextField, URLField

# A statement and its parameters, ready for `cursor.execute`.
Statement = tuple[str, list]


@cache
def insert_fields(model: type[Model], *, with_pk: bool) -> tuple:
    """The columns an INSERT of `model` writes, in order: every concrete field, the primary key
    only `with_pk`."""
    return tuple(field for field in model._meta.concrete_fields if with_pk or not field.primary_key)


def insert_params(instances: Sequence[Model], fields: Sequence) -> list:
    """The values of `fields` for each instance in turn, as `save()` prepares them (each
    field's `pre_save`, which fills `auto_now_add`, then its database preparation).

    Two shortcuts, each giving what that preparation gives (notifications/tests/test_row_inserts.py):
    - the preparation is given the thread's connection itself, not the `django.db.connection`
      proxy: fields read `connection.ops` and `.features` several times each, and every read
      through the proxy looks the connection up again (a fifth of this function's time);
    - a `str` in a plain text field is the parameter as it is: Django's preparation of it is
      `str(value)` of a `str`. A lazy string or any other value takes the field's own path."""
    database = connections[DEFAULT_DB_ALIAS]
    params = []
    for instance in instances:
        for field in fields:
            if type(field) in _PLAIN_TEXT_FIELDS and type(value := getattr(instance, field.attname)) is str:
                params.append(value)
            else:
                params.append(field.get_db_prep_save(field.pre_save(instance, add=True), database))
    return params


# Text fields whose `pre_save` reads the attribute and whose preparation returns a `str` as it
# is; exact classes only, since a subclass may prepare its values otherwise.
_PLAIN_TEXT_FIELDS = frozenset({CharField, EmailField, SlugField, TextField, URLField})


def _with_pk(instance: Model) -> bool:
    """A primary key the instance already has (a UUID default) is written; an empty one is the
    database's to assign (an auto-increment id)."""
    return instance.pk is not None


@cache
def _insert_sql(model: type[Model], with_pk: bool, rows: int, returning: str) -> str:
    fields = insert_fields(model, with_pk=with_pk)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    tail = f" RETURNING {connection.ops.quote_name(returning)}" if returning else ""
    # Built from the model's own metadata; every value is a bound parameter.
    return f"INSERT INTO {model._meta.db_table} ({columns}) VALUES {', '.join([row] * rows)}{tail}"  # noqa: S608


def rows_insert(instances: Sequence[Model], *, returning: str = "") -> Statement:
    """One INSERT of `instances` (same model, all with a primary key or all without) and its
    parameters. Fills each instance's `auto_now_add` fields as `save()` would; a key the
    database assigns is not read back unless `returning` names it."""
    model = type(instances[0])
    with_pk = _with_pk(instances[0])
    if any(type(instance) is not model or _with_pk(instance) != with_pk for instance in instances):
        raise ValueError("rows_insert takes instances of one model, all with a primary key or all without")
    params = insert_params(instances, insert_fields(model, with_pk=with_pk))
    return _insert_sql(model, with_pk, len(instances), returning), params


def rows_insert_before(instances: Sequence[Model], final: Statement) -> Statement:
    """One statement that inserts `instances` (in their order, one INSERT per run of the same
    model) and then runs `final`, whose result is the statement's. A statement is atomic by
    itself: every row is written, or none. `final` may start with its own `WITH`: its CTEs
    join the ones written here."""
    if not instances:
        return final
    parts = [rows_insert(list(group)) for _, group in groupby(instances, key=lambda row: (type(row), _with_pk(row)))]
    ctes = ", ".join(f"written_{index} AS ({sql})" for index, (sql, _) in enumerate(parts))
    params = [param for _, part_params in parts for param in part_params]
    final_sql = final[0]
    if final_sql.startswith("WITH "):
        return f"WITH {ctes}, {final_sql.removeprefix('WITH ')}", [*params, *final[1]]
    return f"WITH {ctes} {final_sql}", [*params, *final[1]]
