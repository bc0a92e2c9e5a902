"""The database's record of the signed checkpoints, append-only like the audit events.

The same triggers as 0002 makes for the events, on the new table: PostgreSQL refuses UPDATE and
DELETE (row triggers) and TRUNCATE (a statement trigger); SQLite refuses UPDATE and DELETE. SQLite's
trigger names are global to the database, so they carry the table's name.
"""

from typing import Any

from django.db import migrations, models

TABLE = "audit_auditcheckpoint"

POSTGRES = [
    """
    CREATE OR REPLACE FUNCTION audit_checkpoint_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit checkpoints are append-only: % refused on %', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$;
    """,
    f"CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE OR DELETE ON {TABLE} FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_refuse_change();",
    f"CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON {TABLE} FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoint_refuse_change();",
]
POSTGRES_REVERSE = [
    f"DROP TRIGGER IF EXISTS audit_checkpoint_no_truncate ON {TABLE};",
    f"DROP TRIGGER IF EXISTS audit_checkpoint_no_update ON {TABLE};",
    "DROP FUNCTION IF EXISTS audit_checkpoint_refuse_change();",
]
SQLITE = [
    f"""CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only: UPDATE refused'); END;""",
    f"""CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only: DELETE refused'); END;""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS audit_checkpoint_no_update;",
    "DROP TRIGGER IF EXISTS audit_checkpoint_no_delete;",
]

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
    dependencies = [("audit", "0002_append_only_triggers")]

    operations = [
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("chain", models.CharField(max_length=40)),
                ("seq", models.PositiveBigIntegerField()),
                ("hash", models.CharField(max_length=64)),
                ("written", models.DateTimeField()),
                ("signature", models.CharField(max_length=128)),
                ("key", models.CharField(max_length=64)),
            ],
            options={
                "ordering": ["chain", "seq"],
                "indexes": [models.Index(fields=["key", "chain", "seq"], name="audit_checkpoint_key_chain")],
            },
        ),
        migrations.RunPython(create, drop),
    ]
