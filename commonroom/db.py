"""Inserting many rows at once.

The roster import and the audit log write hundreds of thousands of rows in
one transaction. On PostgreSQL that goes through COPY, which is several times
faster than INSERT; elsewhere (the embedded SQLite default) through the ORM's
bulk_create. Callers pass plain values by attribute name; nothing is returned,
so callers that need the new ids read them back by a key of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, models
from psycopg.types.json import Jsonb

BATCH = 2000


def insert_rows(model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Insert `rows` (values in the order of `fields`, by attribute name) into `model`'s table."""
    concrete = [model._meta.get_field(name) for name in fields]
    if not all(isinstance(field, models.Field) and field.column for field in concrete):
        raise ValueError(f"insert_rows takes concrete columns of {model.__name__}, not {fields}")
    if connection.vendor != "postgresql":
        objects = [model(**dict(zip(fields, row, strict=True))) for row in rows]
        model._base_manager.bulk_create(objects, batch_size=BATCH)
        return len(objects)
    json_columns = [i for i, field in enumerate(concrete) if isinstance(field, models.JSONField)]
    names = [field.column for field in concrete if isinstance(field, models.Field) and field.column]
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
