"""Inserting many rows at once, and counting up in one statement.

The roster import and the audit log write hundreds of thousands of rows in
one transaction. On PostgreSQL that goes through COPY, which is several times
faster than INSERT; elsewhere (the embedded SQLite default) through the ORM's
bulk_create. Callers pass plain values by attribute name; nothing is returned,
so callers that need the new ids read them back by a key of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.db import connection, connections, models
from psycopg.types.json import Jsonb

BATCH = 2000
FEW = 10


def _column(model: type[models.Model], name: str) -> str:
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field) or not field.column:
        raise ValueError(f"{model.__name__}.{name} is not a column")
    return field.column


def insert_rows(model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Insert `rows` (values in the order of `fields`, by attribute name) into `model`'s table."""
    concrete = [model._meta.get_field(name) for name in fields]
    names = [_column(model, name) for name in fields]
    # COPY costs two round trips to the server; one INSERT is quicker for a few rows (an action's events).
    if connection.vendor != "postgresql" or (isinstance(rows, Sequence) and len(rows) <= FEW):
        objects = [model(**dict(zip(fields, row, strict=True))) for row in rows]
        model._base_manager.bulk_create(objects, batch_size=BATCH)
        return len(objects)
    json_columns = [i for i, field in enumerate(concrete) if isinstance(field, models.JSONField)]
    columns = ", ".join(connection.ops.quote_name(name) for name in names)
    table = connection.ops.quote_name(model._meta.db_table)
    count = 0
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                if json_columns:
                    row = list(row)  # noqa: PLW2901
                    for i in json_columns:
                        row[i] = Jsonb(row[i])
                copy.write_row(row)
                count += 1
    return count


def values_where_in(
    model: type[models.Model], key: str, keys: Iterable[Any], fields: Sequence[str]
) -> Iterator[tuple[Any, ...]]:
    """Rows of `model` whose `key` is one of `keys`, as tuples of `fields`.

    Tens of thousands of keys are one array parameter on PostgreSQL (`= ANY(%s)`);
    elsewhere they go in batches small enough for SQLite's parameter limit.
    """
    keys = list(keys)
    if not keys:
        return
    if connection.vendor == "postgresql":
        quote = connection.ops.quote_name
        columns = ", ".join(quote(_column(model, name)) for name in fields)
        table = quote(model._meta.db_table)
        # Names come from the model; the values are one bound parameter.
        sql = f"SELECT {columns} FROM {table} WHERE {quote(_column(model, key))} = ANY(%s)"  # noqa: S608
        with connection.cursor() as cursor:
            cursor.execute(sql, [keys])
            yield from cursor.fetchall()
        return
    for start in range(0, len(keys), 5000):
        yield from model._base_manager.filter(**{f"{key}__in": keys[start : start + 5000]}).values_list(*fields)


def next_number(model: type[models.Model], pk: int, name: str) -> int:
    """Add one to the counter `name` of the row `pk` and return the new value, in one statement (which
    also locks the row until the transaction ends). PostgreSQL and SQLite both have RETURNING."""
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name(_column(model, name))
    key = connection.ops.quote_name(_column(model, model._meta.pk.name))
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = {column} + 1 WHERE {key} = %s RETURNING {column}", [pk])  # noqa: S608  (names from the model)
        row = cursor.fetchone()
    if row is None:
        raise model.DoesNotExist(f"{model.__name__} {pk} does not exist")  # type: ignore[attr-defined]
    return int(row[0])


def close_request_connections(**kwargs: Any) -> None:
    """At the end of an HTTP request, close its thread's database connections. Under ASGI Django runs
    each request in a thread of its own, and a connection kept for reuse (`CONN_MAX_AGE`) would stay
    open after that thread has gone: one per request, until PostgreSQL refuses more. The sockets'
    thread, which lives as long as the process, keeps its connection. A connection inside an atomic
    block (a test's transaction) is left alone."""
    for each in connections.all(initialized_only=True):
        if not each.in_atomic_block:
            each.close()
