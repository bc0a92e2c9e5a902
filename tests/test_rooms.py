"""Invariant 1: a room belongs to exactly one class or one cohort, and only provisioning makes rooms."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django_scopes import scopes_disabled

from audit.models import AuditEvent
from classes.models import Cohort, SchoolClass
from messaging.models import Room
from messaging.rooms import sync_rooms
from tests.conftest import SchoolPeople
from tests.test_import import FILES, changed, run, write

pytestmark = pytest.mark.django_db


def test_every_class_and_cohort_has_exactly_one_room(school_a: SchoolPeople) -> None:
    with scopes_disabled():
        rooms = Room.objects.filter(school=school_a.school)
        assert {r.school_class_id for r in rooms if r.kind == "class"} == {
            school_a.school_class.pk,
            school_a.other_class.pk,
        }
        assert [r.cohort_id for r in rooms if r.kind == "cohort"] == [school_a.cohort.pk]
        with transaction.atomic():
            assert sync_rooms([school_a.school.pk]) == 0  # nothing more to make


@pytest.mark.parametrize("owner", ["neither", "both"])
def test_the_database_refuses_a_room_of_neither_or_both(school_a: SchoolPeople, owner: str) -> None:
    fields = {"neither": {}, "both": {"school_class": school_a.school_class, "cohort": school_a.cohort}}[owner]
    with scopes_disabled(), pytest.raises(IntegrityError), transaction.atomic():
        Room.objects.create(school=school_a.school, **fields)


def test_a_class_never_has_two_rooms(school_a: SchoolPeople) -> None:
    with scopes_disabled(), pytest.raises(IntegrityError), transaction.atomic():
        Room.objects.create(school=school_a.school, school_class=school_a.school_class)


def test_the_import_makes_the_rooms_and_a_second_import_none(tmp_path: Path) -> None:
    assert run(write(tmp_path / "one"))[0] == 0
    with scopes_disabled():
        assert Room.objects.filter(school_class__isnull=False).count() == SchoolClass.objects.count() == 3
        assert Room.objects.filter(cohort__isnull=False).count() == Cohort.objects.count() == 3
        created = AuditEvent.objects.filter(action="room.created").count()
        assert created == 6
    files = changed(FILES, "classes", "cl3,,,Further Maths,", "cl3,,,Further Mathematics,")
    assert run(write(tmp_path / "two", files))[0] == 0
    with scopes_disabled():
        assert Room.objects.count() == 6
        assert AuditEvent.objects.filter(action="room.created").count() == created


def test_a_class_added_in_the_admin_gets_its_room(client: Client, school_a: SchoolPeople) -> None:
    client.login(username=school_a.admin.username, password="pw")
    response = client.post(
        "/admin/classes/schoolclass/add/",
        {"title": "Art 12A", "code": "ART12A", "course_title": "", "course_code": "", "status": "active"},
    )
    assert response.status_code == 302, response.content
    with scopes_disabled():
        art = SchoolClass.objects.get(title="Art 12A")
        assert Room.objects.get(school_class=art).school == school_a.school


def test_no_admin_path_makes_a_room(client: Client, school_a: SchoolPeople, operator: object) -> None:
    client.force_login(operator)  # type: ignore[arg-type]
    assert client.get("/admin/messaging/room/add/").status_code == 404
    assert client.post("/admin/messaging/room/add/", {"school": school_a.school.pk}).status_code == 404


def test_year_end_keeps_the_rooms(tmp_path: Path) -> None:
    import time_machine
    from django.core.management import call_command

    assert run(write(tmp_path / "one"))[0] == 0
    with scopes_disabled():
        before = Room.objects.count()
        school_id = SchoolClass.objects.get(sourced_id="cl1").school_id
    with time_machine.travel("2027-07-20T12:00:00+00:00"):
        call_command("close_year", "--school", str(school_id))
    with scopes_disabled():
        assert Room.objects.count() == before


def test_the_chat_page_makes_no_room(client: Client, school_a: SchoolPeople) -> None:
    client.login(username=school_a.teacher.username, password="pw")
    with scopes_disabled():
        before = Room.objects.count()
    assert client.get("/").status_code == 200
    assert client.post("/", {"name": "private", "user": school_a.student.pk}).status_code == 405
    with scopes_disabled():
        assert Room.objects.count() == before


def test_messaging_never_imports_moderation() -> None:
    import ast

    root = Path(__file__).resolve().parent.parent / "messaging"
    for source in root.rglob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            assert not any(name.split(".")[0] in {"moderation", "frontend"} for name in names), source
