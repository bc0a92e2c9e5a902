"""CSV injection (OWASP): no cell of an export the safeguarding lead downloads runs as a formula in a
spreadsheet, and the text in it is otherwise the text that was written. Roster bundles, an input
format, keep their values exactly."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from django_scopes import scopes_disabled

from classes.models import School, User
from classes.roster_import import import_bundle
from classes.rostergen import RosterSpec, write_bundle
from commonroom.csvfile import neutralised, write_csv
from messaging import services
from moderation import cases
from moderation.models import Case
from tests.conftest import SchoolPeople, make_school
from tests.test_review import class_room, client_for, post, unzip

pytestmark = pytest.mark.django_db

HOSTILE = {
    '=HYPERLINK("http://x","click")': '\'=HYPERLINK("http://x","click")',
    "@SUM(1+1)": "'@SUM(1+1)",
    "-2+3": "'-2+3",
    "+44 20 7946 0000": "'+44 20 7946 0000",
    "\t=1": "'\t=1",
    "\r=1": "'\r=1",
}
ORDINARY = ["see you at 4", "2+3 is 5", "it's 'quoted'", "a = b", "email me @ school", "  =indented"]


@pytest.fixture
def people(db: Any, settings: Any) -> SchoolPeople:
    settings.COMMONROOM_SCREENERS = []  # the bodies are under test here, not screening
    return make_school("Export School", "x", open_class_rooms=True)


def rows_of(body: bytes, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(unzip(body)[name].decode(), newline="")))


def starts_a_formula(cell: str) -> bool:
    return cell[:1] in {"=", "+", "-", "@", "\t", "\r"}


@pytest.mark.parametrize(("value", "cell"), [*HOSTILE.items(), *((text, text) for text in ORDINARY)])
def test_a_cell_is_neutralised_only_when_it_would_run(value: str, cell: str) -> None:
    assert neutralised(value) == cell
    out = io.StringIO()
    write_csv(out, ["value", "number"], [{"value": value, "number": -2}])
    (row,) = csv.DictReader(io.StringIO(out.getvalue(), newline=""))
    assert row == {"value": cell, "number": "-2"}  # numbers are the product's own, and stay numbers


def test_a_search_export_neutralises_message_bodies(people: SchoolPeople) -> None:
    room = class_room(people)
    for body in [*HOSTILE, *ORDINARY]:
        post(people.student, room, body)
    answer = client_for(people.safeguarding_lead).get("/review/export/search/?format=csv")
    assert answer.status_code == 200
    bodies = [row["body"] for row in rows_of(answer.content, "search.csv")]
    assert sorted(bodies) == sorted([*HOSTILE.values(), *ORDINARY])
    records = json.loads(
        unzip(client_for(people.safeguarding_lead).get("/review/export/search/?format=json").content)["search.json"]
    )["records"]
    assert sorted(record["body"] for record in records) == sorted([*HOSTILE, *ORDINARY])  # JSON keeps the text


def test_a_case_export_neutralises_every_cell(people: SchoolPeople) -> None:
    message = post(people.student, class_room(people), '=HYPERLINK("http://x","click")')
    services.report_message(user=people.aide, message_id=message.pk, category="other", note="@SUM(1+1)")
    with scopes_disabled():
        case = Case.objects.get(message=message)
    cases.add_note(user=people.teacher, case_id=case.pk, text="-2+3")
    cases.escalate(user=people.teacher, case_id=case.pk, reason="+1 see note")
    answer = client_for(people.safeguarding_lead).get(f"/review/export/cases/{case.pk}/?format=csv")
    assert answer.status_code == 200
    rows = rows_of(answer.content, "case.csv")
    texts = {row["section"]: row["text"] for row in rows if row["section"] in {"report", "note", "message"}}
    assert texts == {"report": "'@SUM(1+1)", "note": "'-2+3", "message": '\'=HYPERLINK("http://x","click")'}
    assert not [cell for row in rows for cell in row.values() if starts_a_formula(cell)]


def test_a_chronology_export_has_no_formula(people: SchoolPeople) -> None:
    """Its cells begin with the product's words ("by ..."), not people's; this keeps it so."""
    message = post(people.student, class_room(people), "@SUM(1+1)")
    services.remove_message(user=people.teacher, message_id=message.pk, reason="=cmd|' /C calc'!A0", now=None)
    answer = client_for(people.safeguarding_lead).get(f"/review/export/people/{people.student.pk}/?format=csv")
    assert answer.status_code == 200
    rows = rows_of(answer.content, "chronology.csv")
    assert rows
    assert not [cell for row in rows for cell in row.values() if starts_a_formula(cell)]


def test_a_roster_bundle_keeps_values_that_look_like_formulas(tmp_path: Path, db: Any) -> None:
    """A bundle is read back by the import: its values must arrive as written, quote-free."""
    person = {
        "sourcedId": "f-odd", "enabledUser": "true", "orgSourcedIds": "f-school-0", "role": "teacher",
        "username": "f.odd", "givenName": "-Ann", "familyName": "=Smith+1", "email": "f.odd@example.org",
    }  # fmt: skip
    spec = RosterSpec(
        prefix="f", district=None, school_names=("@Hill Academy",), grades=(11,), students_per_grade=2,
        subjects_per_student=1, aides_per_school=0, extra_users=[person],
    )  # fmt: skip
    write_bundle(tmp_path / "bundle", spec)
    assert "-Ann,=Smith+1" in (tmp_path / "bundle" / "users.csv").read_text("utf-8-sig")
    import_bundle(tmp_path / "bundle", today=date(2026, 10, 1))
    with scopes_disabled():
        assert School.objects.get(sourced_id="f-school-0").name == "@Hill Academy"
        odd = User.objects.get(username="f.odd")
    assert (odd.given_name, odd.family_name) == ("-Ann", "=Smith+1")
