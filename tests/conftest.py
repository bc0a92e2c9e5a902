"""Shared fixtures: named personas in two schools, service requirements, and the audit-trigger bypass."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import connection, connections, transaction
from django.db.backends.base.operations import BaseDatabaseOperations
from django_scopes import scopes_disabled

from classes.models import AcademicSession, Cohort, CohortMembership, Enrollment, School, SchoolClass, StaffRole, User
from messaging.rooms import sync_rooms

REQUIRE_SERVICES = os.environ.get("COMMONROOM_REQUIRE_SERVICES") == "1"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked `postgres` or `redis` needs that service; in CI a missing service fails the test."""
    from django.conf import settings

    missing = []
    if (
        item.get_closest_marker("postgres")
        and settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql"
    ):
        missing.append("PostgreSQL (set DATABASE_URL)")
    if item.get_closest_marker("redis") and not settings.REDIS_URL:
        missing.append("Redis (set REDIS_URL)")
    if item.get_closest_marker("browser") and not os.path.exists(CHROMIUM):
        missing.append(f"Chromium at {CHROMIUM} (set CHROMIUM)")
    if missing:
        message = "needs " + " and ".join(missing)
        if REQUIRE_SERVICES:
            pytest.fail(f"{message}, and COMMONROOM_REQUIRE_SERVICES=1 forbids skipping it")
        pytest.skip(message)


@contextmanager
def audit_triggers_disabled() -> Iterator[None]:
    """Do what an attacker with database access would: get past the append-only triggers."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
            try:
                yield
            finally:
                cursor.execute("SET session_replication_role = DEFAULT")
        else:
            # The append-only tables and their triggers: audit events and checkpoint records.
            guarded = [
                ("audit_no_update", "UPDATE", "audit_auditevent", "audit events"),
                ("audit_no_delete", "DELETE", "audit_auditevent", "audit events"),
                ("audit_checkpoint_no_update", "UPDATE", "audit_auditcheckpoint", "audit checkpoints"),
                ("audit_checkpoint_no_delete", "DELETE", "audit_auditcheckpoint", "audit checkpoints"),
            ]
            for name, _, _, _ in guarded:
                cursor.execute(f"DROP TRIGGER {name}")
            try:
                yield
            finally:
                for name, verb, table, what in guarded:
                    cursor.execute(
                        f"CREATE TRIGGER {name} BEFORE {verb} ON {table} "
                        f"BEGIN SELECT RAISE(ABORT, '{what} are append-only: {verb} refused'); END;"
                    )


_original_flush = BaseDatabaseOperations.execute_sql_flush


def _flush_past_audit_triggers(self: BaseDatabaseOperations, sql_list: Iterable[str]) -> None:
    # Transactional tests empty every table between tests; the audit table refuses
    # that by design, so the test harness (and only it) steps around the triggers.
    with audit_triggers_disabled():
        _original_flush(self, sql_list)


BaseDatabaseOperations.execute_sql_flush = _flush_past_audit_triggers  # type: ignore[method-assign]


@pytest.fixture
def unscoped() -> Iterator[None]:
    with scopes_disabled():
        yield


ROOT = Path(__file__).resolve().parent.parent


def manage_check(*options: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run `manage.py check` with these options and exactly these settings variables: nothing of the
    test run's own database, Redis, key, debug or security settings comes along."""
    own = ("DATABASE_", "REDIS_", "SECURE_", "SECRET_KEY", "DEBUG")
    base = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    base["DJANGO_SETTINGS_MODULE"] = "commonroom.settings"
    return subprocess.run(
        [sys.executable, "manage.py", "check", *options],
        cwd=ROOT,
        env={**base, **variables},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class SchoolPeople:
    school: School
    year: AcademicSession
    cohort: Cohort
    school_class: SchoolClass
    other_class: SchoolClass
    student: User
    other_student: User
    teacher: User
    other_teacher: User
    aide: User
    moderator: User
    safeguarding_lead: User
    admin: User


def _person(school: School, username: str, role: str) -> User:
    user = User.objects.create_user(
        username,
        password="pw",
        school=school,
        role=role,
        given_name=username.rsplit(".", maxsplit=1)[-1].title(),
        family_name="Test",
    )
    return user


def make_school(name: str, prefix: str, *, rooms: bool = True, open_class_rooms: bool = False) -> SchoolPeople:
    """A school with one of each persona; with `rooms`, its rooms too (which start its audit chain);
    with `open_class_rooms`, class rooms open for chat without a teacher opening them."""
    with scopes_disabled():
        school = School.objects.create(
            name=name, sourced_id=f"{prefix}-school", time_zone="Europe/London", class_rooms_start_open=open_class_rooms
        )
        year = AcademicSession.objects.create(
            school=school,
            sourced_id=f"{prefix}-year",
            title="2026-2027",
            kind=AcademicSession.Kind.SCHOOL_YEAR,
            start_date=date(2026, 9, 1),
            end_date=date(2027, 7, 31),
            school_year=2027,
        )
        cohort = Cohort.objects.create(school=school, graduation_year=2027)
        school_class = SchoolClass.objects.create(school=school, title=f"{prefix} English 12A", code="ENG12A")
        other_class = SchoolClass.objects.create(school=school, title=f"{prefix} Maths 12A", code="MAT12A")
        school_class.terms.add(year)
        other_class.terms.add(year)
        people = {
            "student": _person(school, f"{prefix}.student", User.Role.STUDENT),
            "other_student": _person(school, f"{prefix}.otherstudent", User.Role.STUDENT),
            "teacher": _person(school, f"{prefix}.teacher", User.Role.TEACHER),
            "other_teacher": _person(school, f"{prefix}.otherteacher", User.Role.TEACHER),
            "aide": _person(school, f"{prefix}.aide", User.Role.AIDE),
            "moderator": _person(school, f"{prefix}.moderator", User.Role.TEACHER),
            "safeguarding_lead": _person(school, f"{prefix}.dsl", User.Role.STAFF),
            "admin": _person(school, f"{prefix}.admin", User.Role.ADMINISTRATOR),
        }
        for key in ("student", "other_student"):
            CohortMembership.objects.create(school=school, cohort=cohort, user=people[key])
        enrollments: list[tuple[User, SchoolClass, str]] = [
            (people["student"], school_class, Enrollment.Role.STUDENT),
            (people["other_student"], other_class, Enrollment.Role.STUDENT),
            (people["teacher"], school_class, Enrollment.Role.TEACHER),
            (people["aide"], school_class, Enrollment.Role.AIDE),
            (people["other_teacher"], other_class, Enrollment.Role.TEACHER),
        ]
        for user, klass, role in enrollments:
            Enrollment.objects.create(school=school, school_class=klass, user=user, role=role)
        for key, staff_role in [
            ("moderator", StaffRole.Role.MODERATOR),
            ("safeguarding_lead", StaffRole.Role.SAFEGUARDING_LEAD),
            ("admin", StaffRole.Role.SCHOOL_ADMIN),
            ("teacher", StaffRole.Role.TEACHER),
            ("other_teacher", StaffRole.Role.TEACHER),
        ]:
            StaffRole.objects.create(school=school, user=people[key], role=staff_role)
        if rooms:
            with transaction.atomic():
                sync_rooms([school.pk])
    return SchoolPeople(
        school=school, year=year, cohort=cohort, school_class=school_class, other_class=other_class, **people
    )


@pytest.fixture
def school_a(db: Any) -> SchoolPeople:
    return make_school("Aston Grammar", "a")


@pytest.fixture
def school_b(db: Any) -> SchoolPeople:
    return make_school("Bexley High", "b")


@pytest.fixture
def operator(db: Any) -> User:
    return User.objects.create_superuser("operator", password="pw")


@pytest.fixture(autouse=True)
def no_case_clock_in_process(settings: Any) -> None:
    """The case clock starts with the ASGI application; tests that want it turn it on themselves."""
    settings.COMMONROOM_CASE_CLOCK_SECONDS = 0


@pytest.fixture(autouse=True)
def fresh_school_screens() -> Iterator[None]:
    """Each process keeps schools' compiled screens for a while; a test's school may reuse an earlier id."""
    from moderation.rules import forget_all

    forget_all()
    yield
    forget_all()


@pytest.fixture(autouse=True)
def no_cooling_down() -> Iterator[None]:
    """A person closed for flooding may not reconnect for a while; a test's person may reuse an earlier id."""
    from messaging.consumers import _cooling_down

    _cooling_down.clear()
    yield
    _cooling_down.clear()


@pytest.fixture
async def close_thread_connections() -> AsyncIterator[None]:
    """Consumers reach the database from the sync thread; close its connections so the test database can go."""
    yield
    await database_sync_to_async(connections.close_all)()
