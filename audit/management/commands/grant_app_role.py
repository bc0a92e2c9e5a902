"""`manage.py grant_app_role ROLE`: the PostgreSQL role the application runs as, with no power over the
audit log beyond adding to it.

Run it as the role that owns the schema (the one that runs the migrations), after `migrate`. The
application's role gets what it needs on every table, except that on the audit events and on the record
of checkpoints it may only read and add: no UPDATE, DELETE or TRUNCATE. Not owning the tables, it
cannot ALTER them either, so it cannot disable the triggers that refuse changes (only the owner or a
superuser can). Tables made by later migrations get the same privileges (default privileges of the
owner); run the command again after a migration that adds an audit table.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from psycopg import sql

from audit.models import AuditCheckpoint, AuditEvent

APPEND_ONLY = [AuditEvent._meta.db_table, AuditCheckpoint._meta.db_table]


class Command(BaseCommand):
    help = (
        "Give the PostgreSQL role ROLE what the application needs, and on the audit log only SELECT and "
        "INSERT. With --create, create ROLE first (LOGIN; its password from the variable --password-env "
        "names, if any)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", help="The role the application connects as (not the schema's owner).")
        parser.add_argument("--create", action="store_true", help="Create the role if it does not exist.")
        parser.add_argument("--password-env", metavar="VARIABLE", help="The variable that holds its password.")

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("Roles are for PostgreSQL; SQLite has none (its triggers still refuse changes).")
        role = sql.Identifier(options["role"])
        connection.ensure_connection()
        context = connection.connection  # the psycopg connection, to quote names
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
            owner, _ = cursor.fetchone()
            if owner == options["role"]:
                raise CommandError(
                    "The application's role must not be the schema's owner, or it could drop the triggers."
                )
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [options["role"]])
            if cursor.fetchone() is None:
                if not options["create"]:
                    raise CommandError(f"There is no role {options['role']!r} (use --create).")
                password = os.environ.get(options["password_env"] or "", "") if options["password_env"] else ""
                create = sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(role)
                if password:
                    create = sql.SQL("{} PASSWORD {}").format(create, sql.Literal(password))
                cursor.execute(create.as_string(context))
            database = sql.Identifier(connection.settings_dict["NAME"])
            statements = [
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, role),
                sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role),
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(role),
                sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(role),
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
                ).format(role),
                sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {}").format(
                    role
                ),
            ]
            for table in APPEND_ONLY:
                statements.append(
                    sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {} FROM {}").format(
                        sql.Identifier(table), role
                    )
                )
            for statement in statements:
                cursor.execute(statement.as_string(context))
        self.stdout.write(
            f"{options['role']} may use every table; on {', '.join(APPEND_ONLY)} only SELECT and INSERT "
            f"(owner: {owner})."
        )
