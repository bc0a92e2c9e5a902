"""The OneRoster import: real-world files, validation before writing, idempotence, updates, deltas."""

from __future__ import annotations

import json
import zipfile
from datetime import date
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db.models import Model
from django.test import Client
from django_scopes import scopes_disabled

from audit.models import AuditEvent
from audit.services import verify_chain
from classes.models import (
    AcademicSession,
    Cohort,
    CohortMembership,
    Enrollment,
    Organisation,
    School,
    SchoolClass,
    StaffRole,
    User,
)
from classes.roster_import import InvalidBundle, import_bundle

pytestmark = pytest.mark.django_db

MANIFEST = """propertyName,value
manifest.version,1.0
oneroster.version,1.1
file.academicSessions,{academicSessions}
file.categories,absent
file.classes,{classes}
file.classResources,absent
file.courses,{courses}
file.demographics,{demographics}
file.enrollments,{enrollments}
file.lineItems,absent
file.orgs,{orgs}
file.resources,absent
file.results,absent
file.users,{users}
source.systemName,Test SIS
"""

# What a real export looks like: extension columns, quoted commas, several ids in one
# field, a district above two schools, a department, disabled users, aides,
# administrators, a parent, and a teacher who works in two schools.
FILES = {
    "orgs": """sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId,metadata.region
d1,,,Valley Trust,district,VT,,north
s1,,,"Hill School, Upper",school,HS,d1,north
s2,,,Dale School,school,DS,d1,north
dep1,,,Hill Science Department,department,,s1,
""",
    "academicSessions": """sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear
y2027,,,2026-2027,schoolYear,2026-09-01,2027-07-31,,2027
t1,,,Autumn 2026,term,2026-09-01,2027-01-31,y2027,2027
t2,,,Spring 2027,term,2027-02-01,2027-07-31,y2027,2027
""",
    "courses": """sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes
c1,,,y2027,English,ENG,12,d1,English,
c2,,,y2027,"Maths, Further",MATF,11,s2,Maths,
""",
    "classes": """sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods
cl1,,,"English, Year 12",12,c1,ENG12,scheduled,Room 1,s1,"t1,t2",English,,"1,2"
cl2,,,Chemistry 11,11,c1,CHE11,scheduled,Lab,dep1,t1,Science,,
cl3,,,Further Maths,11,c2,MATF11,scheduled,,s2,t2,Maths,,
""",
    "users": """sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,metadata.cohort,metadata.house
u1,,,true,s1,student,amy.hill,,Amy,Hill,,1001,amy@example.org,,,,12,,,Red
u2,,,true,s1,student,ben.hill,,Ben,"O'Hill, Jr",,1002,,,,,11,,2029,Blue
u3,,,false,s1,student,cat.hill,,Cat,Hill,,1003,,,,,10,,,Red
t1,,,TRUE,"s1,d1",teacher,ms.teach,,Tess,Teach,,,tess@example.org,,,,,,,
a1,,,true,s1,aide,mr.aide,,Al,Aide,,,,,,,,,,
ad1,,,true,d1,administrator,district.admin,,Dee,Strict,,,,,,,,,,
p1,,,true,s1,parent,amy.parent,,Pat,Hill,,,,,,u1,,,,
u4,,,true,s2,student,dan.dale,,Dan,Dale,,2001,,,,,09,,,
t2,,,true,"s2,s1",teacher,mr.both,,Bo,Both,,,,,,,,,,
""",
    "enrollments": """sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate
e1,,,cl1,s1,u1,student,false,,
e2,,,cl1,s1,t1,teacher,true,,
e3,,,cl1,s1,a1,aide,false,,
e4,,,cl2,dep1,u2,student,false,2026-09-01,2027-07-31
e5,,,cl3,s2,u4,student,false,,
e6,,,cl3,s2,t2,teacher,true,,
e7,,,cl1,s1,u3,student,false,2026-09-01,
e8,,,cl1,s1,p1,student,false,,
""",
    "demographics": """sourcedId,status,dateLastModified,birthDate,sex
u1,,,2009-03-04,female
u4,,,,male
""",
}

BULK = dict.fromkeys(FILES, "bulk")


def write(folder: Path, files: dict[str, str] | None = None, modes: dict[str, str] | None = None) -> Path:
    """Write a bundle the way SIS exports often are: UTF-8 with a byte-order mark and CRLF line ends."""
    folder.mkdir(parents=True, exist_ok=True)
    contents = {f"{name}.csv": text for name, text in (files or FILES).items()}
    contents["manifest.csv"] = MANIFEST.format(**{**BULK, **(modes or {})})
    for name, text in contents.items():
        (folder / name).write_bytes(("\ufeff" + text.replace("\n", "\r\n")).encode())
    return folder


def changed(files: dict[str, str], name: str, old: str, new: str) -> dict[str, str]:
    assert old in files[name], f"{old!r} not in {name}"
    return {**files, name: files[name].replace(old, new)}


def run(path: Path, *args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("import_oneroster", str(path), *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


MODELS: list[type[Model]] = [
    Organisation,
    School,
    AcademicSession,
    Cohort,
    CohortMembership,
    SchoolClass,
    User,
    Enrollment,
    StaffRole,
    AuditEvent,
]


def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of every roster table and the audit log, to compare before and after."""
    with scopes_disabled():
        return {model.__name__: list(model._base_manager.order_by("pk").values()) for model in MODELS}


class TestFirstImport:
    def test_a_real_world_bundle(self, tmp_path: Path) -> None:
        code, out, err = run(write(tmp_path / "b"), "--json")
        assert code == 0, err
        counts = json.loads(out)
        assert counts["schools"] == {"created": 2, "updated": 0, "deactivated": 0, "unchanged": 0}
        assert counts["sessions"]["created"] == 5  # a school gets the sessions its classes use, and their year
        assert counts["classes"]["created"] == 3
        assert counts["users"]["created"] == 7  # not the parent, not the district-only administrator
        assert counts["enrollments"]["created"] == 7  # not the parent's
        assert counts["cohorts"]["created"] == 3
        assert any("names no school" in w for w in counts["warnings"])
        assert any("several schools" in w for w in counts["warnings"])
        with scopes_disabled():
            hill = School.objects.get(sourced_id="s1")
            dale = School.objects.get(sourced_id="s2")
            assert hill.name == "Hill School, Upper"
            assert hill.organisation is not None
            assert hill.organisation.name == "Valley Trust"
            english = SchoolClass.objects.get(sourced_id="cl1")
            assert english.title == "English, Year 12"
            assert english.course_title == "English"
            assert sorted(english.terms.values_list("sourced_id", flat=True)) == ["t1", "t2"]
            assert SchoolClass.objects.get(sourced_id="cl2").school == hill  # a department's class is its school's
            assert SchoolClass.objects.get(sourced_id="cl3").course_title == "Maths, Further"
            amy = User.objects.get(sourced_id="u1")
            assert (amy.username, amy.given_name, amy.family_name, amy.school) == ("amy.hill", "Amy", "Hill", hill)
            assert str(amy.birth_date) == "2009-03-04"
            assert User.objects.get(sourced_id="u2").family_name == "O'Hill, Jr"
            assert User.objects.get(sourced_id="u3").enabled is False
            assert User.objects.get(sourced_id="a1").role == User.Role.AIDE
            assert User.objects.get(sourced_id="t2").school == dale
            assert not User.objects.filter(sourced_id__in=["p1", "ad1"]).exists()
            assert not amy.has_usable_password()
            assert Enrollment.objects.get(sourced_id="e3").role == Enrollment.Role.AIDE
            assert Enrollment.objects.get(sourced_id="e2").primary is True
            assert str(Enrollment.objects.get(sourced_id="e4").end_date) == "2027-07-31"
            assert set(StaffRole.objects.filter(role="teacher").values_list("user__sourced_id", flat=True)) == {
                "t1",
                "t2",
            }

    def test_cohorts_come_from_the_grade_or_the_roster(self, tmp_path: Path) -> None:
        assert run(write(tmp_path / "b"))[0] == 0
        with scopes_disabled():

            def cohort_of(sourced_id: str) -> int:
                return CohortMembership.objects.get(
                    user__sourced_id=sourced_id, end_date__isnull=True
                ).cohort.graduation_year

            assert cohort_of("u1") == 2027  # grade 12 in the year ending 2027, final grade 12
            assert cohort_of("u2") == 2029  # metadata.cohort wins over grade 11
            assert cohort_of("u3") == 2029  # grade 10
            assert cohort_of("u4") == 2030  # grade 09 at the other school
            assert Cohort.objects.get(school__sourced_id="s1", graduation_year=2027).name == "Class of 2027"

    def test_a_zip_reads_like_a_folder(self, tmp_path: Path) -> None:
        folder = write(tmp_path / "b")
        archive = tmp_path / "bundle.zip"
        with zipfile.ZipFile(archive, "w") as handle:
            for file in folder.iterdir():
                handle.write(file, f"export-2026/{file.name}")  # exporters often nest a folder
        code, out, err = run(archive, "--json")
        assert code == 0, err
        assert json.loads(out)["enrollments"]["created"] == 7

    def test_the_import_is_audited(self, tmp_path: Path) -> None:
        operator = User.objects.create_superuser("op", password="pw")
        assert run(write(tmp_path / "b"), "--actor", "op")[0] == 0
        with scopes_disabled():
            hill = School.objects.get(sourced_id="s1")
            events = AuditEvent.objects.filter(school=hill)
            actions = list(events.values_list("action", flat=True))
            assert actions.count("enrollment.created") == 5
            assert actions.count("staff_role.granted") == 1
            assert actions.count("person.added") == 5
            imported = events.get(action="roster.imported")
            assert imported.actor == operator
            assert imported.payload["counts"]["enrollments"]["created"] == 5
            created = events.filter(
                action="enrollment.created", target_id=str(Enrollment.objects.get(sourced_id="e1").pk)
            )
            assert created.get().payload["user"] == "amy.hill"
            assert verify_chain(f"school:{hill.pk}").intact

    def test_the_readable_summary(self, tmp_path: Path) -> None:
        code, out, err = run(write(tmp_path / "b"))
        assert code == 0
        rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
        assert out.splitlines()[1].split() == ["created", "updated", "deactivated", "unchanged"]
        assert rows["enrollments"] == ["7", "0", "0", "0"]
        assert rows["users"] == ["7", "0", "0", "0"]
        assert "warning: users.csv:" in err


class TestIdempotence:
    def test_an_import_leaves_a_suspension_alone(self, tmp_path: Path) -> None:
        """A student suspended from a moderation case stays suspended, whatever the roster's enabledUser says."""
        folder = write(tmp_path / "b")
        assert run(folder)[0] == 0
        User.objects.filter(username="amy.hill").update(suspended=True)
        assert run(folder)[0] == 0
        amy = User.objects.get(username="amy.hill")
        assert amy.suspended
        assert amy.enabled
        assert not amy.is_active

    def test_the_same_bundle_twice_changes_nothing(self, tmp_path: Path) -> None:
        folder = write(tmp_path / "b")
        assert run(folder)[0] == 0
        before = snapshot()
        code, out, _ = run(folder, "--json")
        assert code == 0
        counts = json.loads(out)
        for entity in ("schools", "sessions", "cohorts", "classes", "users", "enrollments"):
            assert counts[entity]["created"] == counts[entity]["updated"] == counts[entity]["deactivated"] == 0, entity
        assert counts["enrollments"]["unchanged"] == 7
        assert counts["users"]["unchanged"] == 7
        after = snapshot()
        new_events = after.pop("AuditEvent")[len(before.pop("AuditEvent")) :]
        assert after == before
        assert {e["action"] for e in new_events} == {"roster.imported"}  # the import itself is on the record


class TestLaterBundles:
    def test_a_later_bulk_bundle_updates_and_deactivates(self, tmp_path: Path) -> None:
        assert run(write(tmp_path / "one"))[0] == 0
        files = changed(
            FILES, "users", "u1,,,true,s1,student,amy.hill,,Amy,Hill,,1001,amy@example.org,,,,12,,,Red\n", ""
        )
        files = changed(files, "enrollments", "e1,,,cl1,s1,u1,student,false,,\n", "")
        files = changed(files, "demographics", "u1,,,2009-03-04,female\n", "")
        files = changed(files, "classes", "cl3,,,Further Maths,", "cl3,,,Further Mathematics,")
        files = changed(files, "classes", "cl2,,,Chemistry 11,11,c1,CHE11,scheduled,Lab,dep1,t1,Science,,\n", "")
        files = changed(files, "enrollments", "e4,,,cl2,dep1,u2,student,false,2026-09-01,2027-07-31\n", "")
        files = changed(files, "enrollments", "e3,,,cl1,s1,a1,aide,false", "e3,,,cl1,s1,a1,teacher,false")
        files = changed(files, "users", "u3,,,false,s1", "u3,,,true,s1")
        code, out, err = run(write(tmp_path / "two", files), "--json")
        assert code == 0, err
        counts = json.loads(out)
        assert counts["users"]["deactivated"] == 1
        assert counts["users"]["updated"] == 1  # u3 enabled again
        assert counts["classes"] == {"created": 0, "updated": 1, "deactivated": 1, "unchanged": 1}
        assert counts["enrollments"]["deactivated"] == 2
        assert counts["enrollments"]["updated"] == 1
        with scopes_disabled():
            amy = User.objects.get(sourced_id="u1")  # never deleted
            assert amy.enabled is False
            assert User.objects.get(sourced_id="u3").enabled is True
            ended = Enrollment.objects.get(sourced_id="e1")
            assert ended.active is False
            assert ended.end_date is not None
            assert Enrollment.objects.get(sourced_id="e3").role == Enrollment.Role.TEACHER
            assert SchoolClass.objects.get(sourced_id="cl2").status == SchoolClass.Status.ARCHIVED
            assert SchoolClass.objects.get(sourced_id="cl3").title == "Further Mathematics"
            actions = set(AuditEvent.objects.values_list("action", flat=True))
            assert {"enrollment.ended", "enrollment.updated", "person.disabled", "class.archived"} <= actions

    def test_a_bundle_of_one_school_leaves_other_schools_alone(self, tmp_path: Path, school_a: Any) -> None:
        assert run(write(tmp_path / "b"))[0] == 0
        with scopes_disabled():
            assert User.objects.get(pk=school_a.student.pk).enabled is True
            assert Enrollment.objects.filter(school=school_a.school, active=True).count() == 5
            assert SchoolClass.objects.filter(school=school_a.school, status="active").count() == 2

    def test_a_delta_bundle_changes_only_what_it_lists(self, tmp_path: Path) -> None:
        assert run(write(tmp_path / "one"))[0] == 0
        delta = {
            "users": FILES["users"].splitlines()[0]
            + "\nu2,tobedeleted,2026-11-01T00:00:00Z,,,,,,,,,,,,,,,,,\n"
            + "u5,active,2026-11-01T00:00:00Z,true,s1,student,eve.hill,,Eve,Hill,,1005,,,,,12,,,\n",
            "enrollments": FILES["enrollments"].splitlines()[0]
            + "\ne4,tobedeleted,2026-11-01T00:00:00Z,,,,,,,\n"
            + "e9,active,2026-11-01T00:00:00Z,cl1,s1,u5,student,false,,\n",
        }
        modes = dict.fromkeys(FILES, "absent") | {"users": "delta", "enrollments": "delta"}
        code, out, err = run(write(tmp_path / "delta", delta, modes), "--json")
        assert code == 0, err
        counts = json.loads(out)
        assert counts["users"] == {"created": 1, "updated": 0, "deactivated": 1, "unchanged": 0}
        assert counts["enrollments"] == {"created": 1, "updated": 0, "deactivated": 1, "unchanged": 0}
        with scopes_disabled():
            assert User.objects.get(sourced_id="u1").enabled is True  # absent from a delta: untouched
            assert User.objects.get(sourced_id="u2").enabled is False
            assert Enrollment.objects.get(sourced_id="e4").active is False
            assert Enrollment.objects.get(sourced_id="e9").user.username == "eve.hill"
            assert Enrollment.objects.filter(active=True).count() == 7


class TestInvalidBundles:
    @pytest.mark.parametrize(
        ("files", "expected"),
        [
            (
                changed(FILES, "users", "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,", "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,login,"),
                "users.csv:1: username: required column is missing",
            ),
            (
                changed(FILES, "academicSessions", "t1,,,Autumn 2026,term,2026-09-01", "t1,,,Autumn 2026,term,2026-13-01"),
                "academicSessions.csv:3: startDate: '2026-13-01' is not a date (YYYY-MM-DD)",
            ),
            (
                changed(FILES, "enrollments", "e5,,,cl3,s2,u4,", "e5,,,cl3,s2,ghost,"),
                "enrollments.csv:6: userSourcedId: refers to users 'ghost', which is not in the bundle",
            ),
            (
                changed(FILES, "users", "u4,,,true,s2,student,dan.dale", "u1,,,true,s2,student,dan.dale"),
                "users.csv:9: sourcedId: duplicate sourcedId 'u1' (first on line 2)",
            ),
            (
                changed(FILES, "users", "u4,,,true,s2,student,dan.dale", "u4,,,maybe,s2,student,dan.dale"),
                "users.csv:9: enabledUser: must be true or false, not 'maybe'",
            ),
            (
                changed(FILES, "classes", "cl3,,,Further Maths,11,c2,MATF11,scheduled,,s2,t2", "cl3,,,Further Maths,11,c2,MATF11,scheduled,,d1,t2"),
                "classes.csv:4: schoolSourcedId: refers to org 'd1', which is a district, not a school",
            ),
            (
                changed(FILES, "users", "2029,Blue", "soon,Blue"),
                "users.csv:3: metadata.cohort: 'soon' is not a graduation year such as 2027",
            ),
        ],
        ids=["missing-column", "bad-date", "unknown-reference", "duplicate-id", "bad-boolean", "class-in-district", "bad-cohort"],
    )  # fmt: skip
    def test_a_problem_is_reported_and_nothing_is_written(
        self, tmp_path: Path, files: dict[str, str], expected: str
    ) -> None:
        before = snapshot()
        code, _, err = run(write(tmp_path / "b", files))
        assert code == 2
        assert expected in err.splitlines()
        assert "nothing was imported" in err
        assert snapshot() == before

    def test_every_problem_is_listed_at_once(self, tmp_path: Path) -> None:
        files = changed(FILES, "enrollments", "e5,,,cl3,s2,u4,", "e5,,,cl3,s2,ghost,")
        files = changed(files, "academicSessions", "2027-01-31,y2027", "31/01/2027,y2027")
        files = changed(files, "users", "u4,,,true,s2,student,dan.dale", "u1,,,true,s2,student,dan.dale")
        code, out, err = run(write(tmp_path / "b", files), "--json")
        assert code == 2
        lines = [line for line in err.splitlines() if not line.startswith("error:")]
        assert len(lines) == 4  # the duplicate also leaves u4's demographics row pointing nowhere
        assert any(line.startswith("demographics.csv:3: sourcedId: refers to users 'u4'") for line in lines)
        assert json.loads(out)["problems"][0]["file"] == "academicSessions.csv"

    def test_an_existing_import_is_untouched_by_an_invalid_one(self, tmp_path: Path) -> None:
        assert run(write(tmp_path / "one"))[0] == 0
        before = snapshot()
        files = changed(FILES, "enrollments", "e1,,,cl1,s1,u1,", "e1,,,cl1,s1,nobody,")
        files = changed(files, "users", "u4,,,true,s2,student,dan.dale,,Dan,Dale,,2001,,,,,09,,,\n", "")
        assert run(write(tmp_path / "two", files))[0] == 2
        assert snapshot() == before

    def test_a_username_cannot_take_over_another_account(self, tmp_path: Path, school_a: Any) -> None:
        files = changed(FILES, "users", ",amy.hill,", f",{school_a.teacher.username},")
        code, _, err = run(write(tmp_path / "b", files))
        assert code == 2
        assert f"users.csv:2: username: '{school_a.teacher.username}' is already the username of another account" in err

    def test_not_a_bundle(self, tmp_path: Path) -> None:
        (tmp_path / "empty").mkdir()
        code, _, err = run(tmp_path / "empty")
        assert code == 2
        assert "manifest.csv is missing" in err
        code, _, err = run(tmp_path / "nothing-here")
        assert code == 2
        assert "not a folder or a .zip file" in err

    def test_a_school_admin_imports_only_their_school(self, tmp_path: Path) -> None:
        assert run(write(tmp_path / "one"))[0] == 0
        with scopes_disabled():
            hill = School.objects.get(sourced_id="s1")
        with pytest.raises(InvalidBundle) as caught:
            import_bundle(write(tmp_path / "two"), school_only=hill)
        problems = [str(p) for p in caught.value.problems]
        assert "orgs.csv:4: sourcedId: 's2' is not your school; ask a platform operator" in problems
        assert "users.csv:9: orgSourcedIds: names a school that is not yours" in problems  # Dan, at Dale School
        assert "enrollments.csv:6: sourcedId: 'e5' is already used by a record of another school" in problems


class TestAdminUpload:
    def _zip(self, tmp_path: Path, files: dict[str, str] | None = None) -> Path:
        folder = write(tmp_path / "b", files)
        archive = tmp_path / "bundle.zip"
        with zipfile.ZipFile(archive, "w") as handle:
            for file in folder.iterdir():
                handle.write(file, file.name)
        return archive

    def test_an_operator_uploads_a_bundle(self, client: Client, tmp_path: Path) -> None:
        User.objects.create_superuser("op", password="pw")
        client.login(username="op", password="pw")
        with self._zip(tmp_path).open("rb") as upload:
            response = client.post("/admin/import-roster/", {"bundle": upload})
        assert response.status_code == 200
        assert response.context["result"]["enrollments"]["created"] == 7
        with scopes_disabled():
            assert AuditEvent.objects.get(action="roster.imported", school__sourced_id="s1").actor_label == "op"

    def test_an_invalid_upload_lists_its_problems(self, client: Client, tmp_path: Path) -> None:
        User.objects.create_superuser("op", password="pw")
        client.login(username="op", password="pw")
        files = changed(FILES, "enrollments", "e5,,,cl3,s2,u4,", "e5,,,cl3,s2,ghost,")
        with self._zip(tmp_path, files).open("rb") as upload:
            response = client.post("/admin/import-roster/", {"bundle": upload})
        assert response.status_code == 200
        assert response.context["problems"] == [
            "enrollments.csv:6: userSourcedId: refers to users 'ghost', which is not in the bundle"
        ]
        assert b"was not imported" in response.content
        with scopes_disabled():
            assert not School.objects.exists()

    def test_a_school_admin_cannot_import_another_school(self, client: Client, tmp_path: Path, school_a: Any) -> None:
        client.login(username=school_a.admin.username, password="pw")
        with self._zip(tmp_path).open("rb") as upload:
            response = client.post("/admin/import-roster/", {"bundle": upload})
        assert response.status_code == 200
        assert any("is not your school" in p for p in response.context["problems"])
        with scopes_disabled():
            assert not School.objects.filter(sourced_id="s1").exists()

    def test_people_without_a_provisioning_role_cannot_reach_it(self, client: Client, school_a: Any) -> None:
        client.login(username=school_a.teacher.username, password="pw")
        response = client.get("/admin/import-roster/")
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]


def test_a_terminal_gets_a_progress_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    call_command("import_oneroster", str(write(tmp_path / "b")))
    captured = capsys.readouterr()
    assert "import: 100%" in captured.err
    assert "8/8" in captured.err
    assert "Imported b:" in captured.out


def first_import(tmp_path: Path) -> None:
    code, _, err = run(write(tmp_path / "first"))
    assert code == 0, err


ORGS_HEADER = FILES["orgs"].splitlines()[0]
USERS_HEADER = FILES["users"].splitlines()[0]
ENROLLMENTS_HEADER = FILES["enrollments"].splitlines()[0]
CLASSES_HEADER = FILES["classes"].splitlines()[0]


class TestHostileBundles:
    """Odd and hostile input gets a clear problem (exit 2) or a warning, never a traceback or a leak."""

    @pytest.mark.parametrize(
        ("files", "expected"),
        [
            (changed(FILES, "classes", "cl3,,,Further Maths,", f"cl3,,,{'M' * 300},"), "classes.csv:4: title: is 300 characters long; at most 255 fit"),
            (changed(FILES, "users", ",dan.dale,", f",{'d' * 200},"), "users.csv:9: username: is 200 characters long; at most 150 fit"),
            (changed(FILES, "users", ",Dan,Dale,", ",D\x00n,Dale,"), "users.csv:9: givenName: contains a NUL character"),
            (changed(FILES, "users", ",dan.dale,", ",Amy.Hill,"), "users.csv:9: username: duplicate username 'Amy.Hill' (first on line 2)"),
            (changed(FILES, "orgs", "dep1,,,Hill Science Department,department,,s1,", "dep1,,,Hill Science Department,department,,d1,"), "orgs.csv:5: parentSourcedId: a department must sit under a school"),
            (changed(FILES, "enrollments", "e2,,,cl1,s1,t1,teacher,true", "e2,,,cl1,s1,t1,teacher,perhaps"), "enrollments.csv:3: primary: must be true or false, not 'perhaps'"),
        ],
        ids=["long-title", "long-username", "nul", "username-case", "department-under-district", "bad-primary"],
    )  # fmt: skip
    def test_a_problem_not_a_crash(self, tmp_path: Path, files: dict[str, str], expected: str) -> None:
        before = snapshot()
        code, _, err = run(write(tmp_path / "b", files))
        assert code == 2, err
        assert expected in err.splitlines()
        assert snapshot() == before

    @pytest.mark.parametrize("grade", ["2100", "²", "Other"])
    def test_a_grade_that_is_no_grade_is_a_warning(self, tmp_path: Path, grade: str) -> None:
        code, out, err = run(write(tmp_path / "b", changed(FILES, "users", ",,,,,09,,,", f",,,,,{grade},,,")), "--json")
        assert code == 0, err
        assert any(w.startswith("users.csv:9: grades:") for w in json.loads(out)["warnings"])
        with scopes_disabled():
            assert not CohortMembership.objects.filter(user__sourced_id="u4").exists()

    def test_long_names_fit_in_the_audit_log(self, tmp_path: Path) -> None:
        files = changed(FILES, "classes", "cl3,,,Further Maths,", f"cl3,,,{'M' * 250},")
        files = changed(files, "users", ",dan.dale,", f",{'d' * 140},")
        assert run(write(tmp_path / "b", files))[0] == 0
        with scopes_disabled():
            label = AuditEvent.objects.get(action="enrollment.created", payload__user="d" * 140).target_label
        assert len(label) == 255

    def test_usernames_can_pass_between_people_and_swap(self, tmp_path: Path) -> None:
        first_import(tmp_path)
        files = changed(FILES, "users", ",amy.hill,", ",amy.hill.old,")
        files = changed(files, "users", ",ben.hill,", ",amy.hill,")  # Ben takes Amy's old name
        files = changed(files, "users", ",ms.teach,", ",mr.aide,")
        files = changed(files, "users", ",mr.aide,,Al,", ",ms.teach,,Al,")  # two staff swap
        code, _, err = run(write(tmp_path / "two", files))
        assert code == 0, err
        with scopes_disabled():
            names = dict(
                User.objects.filter(sourced_id__in=["u1", "u2", "t1", "a1"]).values_list("sourced_id", "username")
            )
        assert names == {"u1": "amy.hill.old", "u2": "amy.hill", "t1": "mr.aide", "a1": "ms.teach"}

    def test_a_delta_of_enrollments_alone(self, tmp_path: Path) -> None:
        first_import(tmp_path)
        delta = {
            "enrollments": ENROLLMENTS_HEADER
            + "\ne4,tobedeleted,2026-11-01T00:00:00Z,,,,,,,\n"
            + "e1,active,2026-11-01T00:00:00Z,cl1,s1,u1,student,true,,\n"
            + "e20,active,2026-11-01T00:00:00Z,cl2,dep1,u3,student,false,,\n"  # a department's class, orgs absent
        }
        modes = dict.fromkeys(FILES, "absent") | {"enrollments": "delta"}
        code, out, err = run(write(tmp_path / "delta", delta, modes), "--json")
        assert code == 0, err
        assert json.loads(out)["enrollments"] == {"created": 1, "updated": 1, "deactivated": 1, "unchanged": 0}
        with scopes_disabled():
            assert Enrollment.objects.get(sourced_id="e4").active is False
            assert Enrollment.objects.get(sourced_id="e1").primary is True
            assert Enrollment.objects.get(sourced_id="e20").school_class.sourced_id == "cl2"
            hill = School.objects.get(sourced_id="s1")
            assert AuditEvent.objects.filter(school=hill, action="roster.imported").count() == 2

    def test_a_delta_of_classes_without_courses(self, tmp_path: Path) -> None:
        first_import(tmp_path)
        delta = {
            "classes": CLASSES_HEADER
            + "\ncl3,active,2026-11-01T00:00:00Z,Further Maths II,11,c2,MATF11,scheduled,,s2,t2,Maths,,\n"
        }
        modes = dict.fromkeys(FILES, "absent") | {"classes": "delta"}
        code, _, err = run(write(tmp_path / "delta", delta, modes))
        assert code == 0, err
        with scopes_disabled():
            klass = SchoolClass.objects.get(sourced_id="cl3")
        assert (klass.title, klass.course_title) == ("Further Maths II", "Maths, Further")

    def test_deleted_orgs_carry_only_their_id(self, tmp_path: Path) -> None:
        first_import(tmp_path)
        delta = {
            "orgs": ORGS_HEADER
            + "\ns2,tobedeleted,2026-11-01T00:00:00Z,,,,,\nd1,tobedeleted,2026-11-01T00:00:00Z,,,,,\n"
        }
        modes = dict.fromkeys(FILES, "absent") | {"orgs": "delta"}
        code, _, err = run(write(tmp_path / "delta", delta, modes))
        assert code == 0, err
        with scopes_disabled():
            assert School.objects.get(sourced_id="s2").active is False
            district = Organisation.objects.get(sourced_id="d1")
            assert (district.name, district.active) == ("Valley Trust", False)
            assert School.objects.get(sourced_id="s1").active is True

    def test_a_school_row_in_a_delta_keeps_its_trust(self, tmp_path: Path) -> None:
        first_import(tmp_path)
        delta = {"orgs": ORGS_HEADER + "\ns2,active,2026-11-01T00:00:00Z,Dale School,school,DS,d1,north\n"}
        modes = dict.fromkeys(FILES, "absent") | {"orgs": "delta"}
        assert run(write(tmp_path / "delta", delta, modes))[0] == 0
        with scopes_disabled():
            dale = School.objects.get(sourced_id="s2")
            assert dale.organisation is not None
            assert dale.organisation.sourced_id == "d1"

    def test_a_one_school_export_leaves_its_sister_schools_alone(self, tmp_path: Path) -> None:
        first_import(tmp_path)
        with scopes_disabled():
            hill = School.objects.get(sourced_id="s1")
        only_hill = changed(FILES, "orgs", "s2,,,Dale School,school,DS,d1,north\n", "")
        only_hill = changed(only_hill, "classes", "cl3,,,Further Maths,11,c2,MATF11,scheduled,,s2,t2,Maths,,\n", "")
        only_hill = changed(only_hill, "courses", 'c2,,,y2027,"Maths, Further",MATF,11,s2,Maths,\n', "")
        only_hill = changed(only_hill, "users", "u4,,,true,s2,student,dan.dale,,Dan,Dale,,2001,,,,,09,,,\n", "")
        only_hill = changed(only_hill, "users", 't2,,,true,"s2,s1",teacher,mr.both,,Bo,Both,,,,,,,,,,\n', "")
        only_hill = changed(
            only_hill, "enrollments", "e5,,,cl3,s2,u4,student,false,,\ne6,,,cl3,s2,t2,teacher,true,,\n", ""
        )
        only_hill = changed(only_hill, "demographics", "u4,,,,male\n", "")
        import_bundle(write(tmp_path / "hill", only_hill), school_only=hill)
        with scopes_disabled():
            assert School.objects.get(sourced_id="s2").active is True
            assert User.objects.get(sourced_id="u4").enabled is True
            assert Enrollment.objects.get(sourced_id="e5").active is True
            assert not AuditEvent.objects.filter(school__sourced_id="s2", action="school.deactivated").exists()

    def test_a_school_admin_cannot_reach_another_school_through_a_delta(self, tmp_path: Path) -> None:
        first_import(tmp_path)
        with scopes_disabled():
            hill = School.objects.get(sourced_id="s1")
        delta = {
            "users": USERS_HEADER + "\nx1,active,2026-11-01T00:00:00Z,true,s2,student,intruder,,In,Truder,,,,,,,09,,,\n"
        }
        modes = dict.fromkeys(FILES, "absent") | {"users": "delta"}
        with pytest.raises(InvalidBundle) as caught:
            import_bundle(write(tmp_path / "delta", delta, modes), school_only=hill)
        assert [str(p) for p in caught.value.problems] == [
            "users.csv:2: orgSourcedIds: names a school that is not yours"
        ]
        assert not User.objects.filter(username="intruder").exists()

    def test_another_districts_ids_cannot_take_over_records(self, tmp_path: Path) -> None:
        first_import(tmp_path)
        other = {
            "orgs": ORGS_HEADER + "\nx1,,,Far School,school,FS,,\n",
            "users": USERS_HEADER + "\nu1,,,true,x1,student,zed.other,,Zed,Other,,,,,,,09,,,\n",
            "enrollments": ENROLLMENTS_HEADER + "\n",
        }
        modes = dict.fromkeys(FILES, "absent") | {"orgs": "bulk", "users": "bulk", "enrollments": "bulk"}
        code, _, err = run(write(tmp_path / "other", other, modes))
        assert code == 2
        assert "users.csv:2: sourcedId: 'u1' is already used by a record of another school" in err
        with scopes_disabled():
            amy = User.objects.get(sourced_id="u1")
        assert (amy.username, amy.school.sourced_id if amy.school else None) == ("amy.hill", "s1")

    def test_a_delta_without_sessions_keeps_cohorts(self, tmp_path: Path) -> None:
        # A school year from February to December: a guess from the calendar would move students.
        files = changed(
            FILES,
            "academicSessions",
            "y2027,,,2026-2027,schoolYear,2026-09-01,2027-07-31",
            "y2027,,,2027,schoolYear,2027-02-01,2027-12-20",
        )
        files = changed(
            files,
            "academicSessions",
            "t1,,,Autumn 2026,term,2026-09-01,2027-01-31",
            "t1,,,Autumn 2026,term,2027-02-01,2027-06-30",
        )
        files = changed(
            files,
            "academicSessions",
            "t2,,,Spring 2027,term,2027-02-01,2027-07-31",
            "t2,,,Spring 2027,term,2027-07-01,2027-12-20",
        )
        import_bundle(write(tmp_path / "first", files), today=date(2027, 3, 1))
        delta = {
            "users": USERS_HEADER
            + "\nu1,active,2027-09-01T00:00:00Z,true,s1,student,amy.hill,,Amy,Hill,,1001,amy.new@example.org,,,,12,,,Red\n"
        }
        modes = dict.fromkeys(FILES, "absent") | {"users": "delta"}
        import_bundle(write(tmp_path / "delta", delta, modes), today=date(2027, 9, 10))
        with scopes_disabled():
            membership = CohortMembership.objects.get(user__sourced_id="u1", end_date__isnull=True)
            assert membership.cohort.graduation_year == 2027
            assert User.objects.get(sourced_id="u1").email == "amy.new@example.org"

    def test_a_corrupt_zip(self, tmp_path: Path) -> None:
        folder = write(tmp_path / "b")
        archive = tmp_path / "bundle.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
            for file in folder.iterdir():
                handle.write(file, file.name)
        data = bytearray(archive.read_bytes())
        data[200:260] = b"\xff" * 60  # damage the compressed data of the first member
        archive.write_bytes(bytes(data))
        code, _, err = run(archive)
        assert code == 2
        assert "cannot be read" in err

    def test_a_role_given_by_hand_survives_the_roster(self, tmp_path: Path) -> None:
        from classes.services import grant_role

        first_import(tmp_path)
        with scopes_disabled():
            teacher = User.objects.get(sourced_id="t1")
            assert teacher.school is not None
            grant_role(actor=None, school=teacher.school, user=teacher, role=StaffRole.Role.TEACHER)
        without_tess = changed(FILES, "users", "t1,,,TRUE,", "t1,,,false,")
        run(write(tmp_path / "two", without_tess))
        with scopes_disabled():
            role = StaffRole.objects.get(user=teacher, role=StaffRole.Role.TEACHER)
        assert role.source == StaffRole.Source.MANUAL
        assert role.active is True


def test_long_id_lists_are_split() -> None:
    from classes.roster_import import chunks

    assert [len(batch) for batch in chunks(range(12_001), size=5000)] == [5000, 5000, 2001]


@pytest.mark.parametrize(
    ("orgs", "expected"),
    [
        ("\ns2,tobedeleted,2026-11-01T00:00:00Z,,department,,,\n", "orgs.csv:2: sourcedId: 's2' is not your school; ask a platform operator"),
        ("\nd1,tobedeleted,2026-11-01T00:00:00Z,,,,,\n", "orgs.csv:2: sourcedId: 'd1' is not yours to change"),
        ("\ndep9,active,2026-11-01T00:00:00Z,Trojan Department,department,,s2,\n", "orgs.csv:2: parentSourcedId: names a school that is not yours"),
    ],
    ids=["delete-sister-school", "delete-trust", "department-of-sister-school"],
)  # fmt: skip
def test_a_school_admins_org_rows_stay_in_their_school(tmp_path: Path, orgs: str, expected: str) -> None:
    first_import(tmp_path)
    with scopes_disabled():
        hill = School.objects.get(sourced_id="s1")
    modes = dict.fromkeys(FILES, "absent") | {"orgs": "delta"}
    with pytest.raises(InvalidBundle) as caught:
        import_bundle(write(tmp_path / "delta", {"orgs": ORGS_HEADER + orgs}, modes), school_only=hill)
    assert expected in [str(p) for p in caught.value.problems]
    with scopes_disabled():
        assert School.objects.get(sourced_id="s2").active is True
        assert Organisation.objects.get(sourced_id="d1").active is True


def test_organisation_changes_are_audited(tmp_path: Path) -> None:
    first_import(tmp_path)
    with scopes_disabled():
        created = AuditEvent.objects.get(action="organisation.created")
    assert created.chain == "platform"
    assert created.payload["name"] == "Valley Trust"


def test_an_upload_over_the_limit_is_refused(client: Client, settings: Any) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.ROSTER_UPLOAD_MAX_MB = 1
    User.objects.create_superuser("op", password="pw")
    client.login(username="op", password="pw")
    big = SimpleUploadedFile("bundle.zip", b"x" * (1024 * 1024 + 1), content_type="application/zip")
    response = client.post("/admin/import-roster/", {"bundle": big})
    assert response.status_code == 200
    assert "larger than 1 MB" in response.content.decode()


def test_a_delta_of_sessions_or_demographics_alone(tmp_path: Path) -> None:
    first_import(tmp_path)
    sessions_header = FILES["academicSessions"].splitlines()[0]
    delta = {
        "academicSessions": sessions_header
        + "\nt1,active,2026-11-01T00:00:00Z,Michaelmas 2026,term,2026-09-01,2027-01-31,y2027,2027\n"
    }
    modes = dict.fromkeys(FILES, "absent") | {"academicSessions": "delta"}
    code, out, err = run(write(tmp_path / "sessions", delta, modes), "--json")
    assert code == 0, err
    assert json.loads(out)["sessions"]["updated"] == 1
    demographics_header = FILES["demographics"].splitlines()[0]
    delta = {"demographics": demographics_header + "\nu1,active,2026-11-01T00:00:00Z,2010-01-01,female\n"}
    modes = dict.fromkeys(FILES, "absent") | {"demographics": "delta"}
    code, out, err = run(write(tmp_path / "demographics", delta, modes), "--json")
    assert code == 0, err
    assert json.loads(out)["users"]["updated"] == 1
    with scopes_disabled():
        assert AcademicSession.objects.get(school__sourced_id="s1", sourced_id="t1").title == "Michaelmas 2026"
        assert str(User.objects.get(sourced_id="u1").birth_date) == "2010-01-01"
        assert AuditEvent.objects.filter(action="person.updated", target_label="amy.hill").exists()


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("yes", True), ("FALSE", False), ("", False)])
def test_primary_takes_every_boolean_spelling(tmp_path: Path, value: str, expected: bool) -> None:
    assert (
        run(
            write(
                tmp_path / "b",
                changed(FILES, "enrollments", "e2,,,cl1,s1,t1,teacher,true", f"e2,,,cl1,s1,t1,teacher,{value}"),
            )
        )[0]
        == 0
    )
    with scopes_disabled():
        assert Enrollment.objects.get(sourced_id="e2").primary is expected
