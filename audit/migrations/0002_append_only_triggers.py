"""The database itself refuses to change or delete audit events.

PostgreSQL: row triggers refuse UPDATE and DELETE, a statement trigger refuses
TRUNCATE. SQLite: row triggers refuse UPDATE and DELETE (SQLite has no
TRUNCATE; a DELETE without WHERE fires the row trigger too).
"""

from typing import Any

from django.db import migrations

TABLE = "audit_auditevent"

POSTGRES = [
    f"""
    CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit events are append-only: % refused on %', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$;
    """,
    f"CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON {TABLE} FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();",
    f"CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON {TABLE} FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();",
]
POSTGRES_REVERSE = [
    f"DROP TRIGGER IF EXISTS audit_no_truncate ON {TABLE};",
    f"DROP TRIGGER IF EXISTS audit_no_update ON {TABLE};",
    "DROP FUNCTION IF EXISTS audit_refuse_change();",
]
SQLITE = [
    f"""CREATE TRIGGER audit_no_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END;""",
    f"""CREATE TRIGGER audit_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END;""",
]
SQLITE_REVERSE = ["DROP TRIGGER IF EXISTS audit_no_update;", "DROP TRIGGER IF EXISTS audit_no_delete;"]

STATEMENTS = {"postgresql": (POSTGRES, POSTGRES_REVERSE), "sqlite": (SQLITE, SQLITE_REVERSE)}


def _run(schema_editor: Any, forward: bool) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in STATEMENTS:
        raise RuntimeError(f"Commonroom's audit log needs PostgreSQL or SQLite, not {vendor}.")
    for statement in STATEMENTS[vendor][0 if forward else 1]:
        schema_editor.execute(statement, params=None)


def create(apps: Any, schema_editor: Any) -> None:
    _run(schema_editor, forward=True)


def drop(apps: Any, schema_editor: Any) -> None:
    _run(schema_editor, forward=False)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(create, drop)]
