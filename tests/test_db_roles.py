"""On PostgreSQL the application runs as a role that can add to the audit log (and to the record of its
checkpoints) and read it, but cannot change, delete or truncate it, nor disable or drop its triggers
(`manage.py grant_app_role`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models.deletion import ProtectedError
from django_scopes import scopes_disabled

from audit.models import AuditEvent
from classes.models import User
from tests.conftest import SchoolPeople

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

AS_THE_APP = """
import json, django
django.setup()
from django.db import connection, transaction
from audit.services import audited, record
found = {}
with audited(%(school)d):
    record("test.as_the_app", school_id=%(school)d)
found["recorded"] = "yes"
attempts = {
    "update": "UPDATE audit_auditevent SET action = 'forged'",
    "delete": "DELETE FROM audit_auditevent",
    "truncate": "TRUNCATE audit_auditevent",
    "disable_triggers": "ALTER TABLE audit_auditevent DISABLE TRIGGER ALL",
    "drop_trigger": "DROP TRIGGER audit_no_update ON audit_auditevent",
    "checkpoint_insert": "INSERT INTO audit_auditcheckpoint (chain, seq, hash, written, signature, key) "
    "VALUES ('platform', 1, 'h', now(), 's', 'k')",
    "checkpoint_update": "UPDATE audit_auditcheckpoint SET hash = 'forged'",
    "checkpoint_delete": "DELETE FROM audit_auditcheckpoint",
    "checkpoint_truncate": "TRUNCATE audit_auditcheckpoint",
    "checkpoint_disable_triggers": "ALTER TABLE audit_auditcheckpoint DISABLE TRIGGER ALL",
    "checkpoint_drop_trigger": "DROP TRIGGER audit_checkpoint_no_update ON audit_auditcheckpoint",
}
for name, statement in attempts.items():
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
        found[name] = "done"
    except Exception as error:
        found[name] = str(error).splitlines()[0]
print(json.dumps(found))
"""


@pytest.fixture
def app_role() -> Any:
    name = f"commonroom_app_test_{uuid.uuid4().hex[:10]}"
    yield name
    with connection.cursor() as cursor:  # the role is ours: it goes with what was granted to it
        cursor.execute(f'DROP OWNED BY "{name}"')
        cursor.execute(f'DROP ROLE IF EXISTS "{name}"')


def test_the_app_role_adds_to_the_audit_log_and_can_do_nothing_else_to_it(
    school_a: SchoolPeople, app_role: str
) -> None:
    password = uuid.uuid4().hex  # a server that asks for passwords over TCP gets one
    os.environ["COMMONROOM_TEST_APP_PASSWORD"] = password
    try:
        call_command("grant_app_role", app_role, "--create", "--password-env", "COMMONROOM_TEST_APP_PASSWORD")
    finally:
        del os.environ["COMMONROOM_TEST_APP_PASSWORD"]
    settings = connection.settings_dict
    where = f"{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"
    url = f"postgres://{app_role}:{password}@{where}"
    variables = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    variables |= {"DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "-c", AS_THE_APP % {"school": school_a.school.pk}],
        cwd=ROOT,
        env=variables,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["recorded"] == "yes"
    for name in ("update", "delete", "truncate"):
        assert found[name].startswith("permission denied for table audit_auditevent"), (name, found[name])
    for name in ("disable_triggers", "drop_trigger"):
        assert found[name].startswith("must be owner of"), (name, found[name])
    # The record of checkpoints likewise (the app role writes it when it runs `audit_checkpoint`).
    assert found["checkpoint_insert"] == "done"
    for name in ("checkpoint_update", "checkpoint_delete", "checkpoint_truncate"):
        assert found[name].startswith("permission denied for table audit_auditcheckpoint"), (name, found[name])
    for name in ("checkpoint_disable_triggers", "checkpoint_drop_trigger"):
        assert found[name].startswith("must be owner of"), (name, found[name])
    with scopes_disabled():
        assert AuditEvent.all_chains.filter(action="test.as_the_app").count() == 1
        assert not AuditEvent.all_chains.filter(action="forged").exists()


def test_the_schema_owner_is_refused_as_the_app_role(school_a: SchoolPeople) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="must not be the schema's owner"):
        call_command("grant_app_role", connection.settings_dict["USER"] or "postgres")


def test_deleting_a_person_never_deletes_their_audit_rows(school_a: SchoolPeople) -> None:
    from django.db import transaction

    from audit.services import record

    with transaction.atomic():
        record("test.by_the_student", school_id=school_a.school.pk, actor=school_a.student)
    with scopes_disabled():
        before = AuditEvent.all_chains.filter(actor=school_a.student).count()
        with pytest.raises(ProtectedError):
            User.objects.filter(pk=school_a.student.pk).delete()
        assert AuditEvent.all_chains.filter(actor=school_a.student).count() == before
