"""Closing a school year on an imported roster, then importing the next year's."""

from __future__ import annotations

import json
from datetime import date
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.test import Client
from django_scopes import scopes_disabled

from audit.models import AuditEvent
from audit.services import verify_chain
from classes.models import AcademicSession, Cohort, CohortMembership, Enrollment, School, SchoolClass, User
from classes.roster_import import import_bundle
from tests.test_import import FILES, write

pytestmark = pytest.mark.django_db

NEXT_YEAR = {
    **FILES,
    "academicSessions": """sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear
y2028,,,2027-2028,schoolYear,2027-09-01,2028-07-31,,2028
t3,,,Autumn 2027,term,2027-09-01,2028-01-31,y2028,2028
""",
    "classes": """sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods
cl4,,,English 13,12,c1,ENG13,scheduled,,s1,t3,English,,
cl5,,,Further Maths 2,12,c2,MATF12,scheduled,,s2,t3,Maths,,
""",
    # Amy (u1) graduated and has left the SIS; everyone else moved up a grade.
    "users": "\n".join(line for line in FILES["users"].splitlines() if not line.startswith("u1,"))
    .replace(",,11,,2029,Blue", ",,12,,2029,Blue")
    .replace(",,10,,,Red", ",,11,,,Red")
    .replace(",,09,,,", ",,10,,,")
    + "\n",
    "enrollments": """sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate
e10,,,cl4,s1,u2,student,false,,
e11,,,cl4,s1,t1,teacher,true,,
e12,,,cl5,s2,u4,student,false,,
e13,,,cl5,s2,t2,teacher,true,,
""",
    "demographics": """sourcedId,status,dateLastModified,birthDate,sex
u4,,,,male
""",
}  # fmt: skip


def close(school: School) -> dict[str, object]:
    out = StringIO()
    call_command("close_year", "--school", str(school.pk), stdout=out)
    return json.loads(out.getvalue())  # type: ignore[no-any-return]


@pytest.fixture
def imported(tmp_path: Path) -> School:
    import_bundle(write(tmp_path / "this-year"), today=date(2026, 11, 2))
    with scopes_disabled():
        return School.objects.get(sourced_id="s1")


@pytest.mark.parametrize("keep_access", [True, False], ids=["alumni-keep-access", "alumni-lose-access"])
def test_a_year_closes_and_the_next_one_is_imported(tmp_path: Path, imported: School, keep_access: bool) -> None:
    with scopes_disabled():
        School.objects.filter(pk=imported.pk).update(alumni_keep_access=keep_access)
        amy = User.objects.get(sourced_id="u1")
        dale = School.objects.get(sourced_id="s2")
        dale_before = list(Enrollment.objects.filter(school=dale, active=True).values_list("pk", flat=True))

    with time_machine.travel(date(2027, 7, 20)):
        result = close(imported)
    assert result == {
        "school_year": 2027,
        "graduated_cohort": 2027,
        "graduates": 1,
        "alumni_keep_access": keep_access,
        "classes_archived": 2,
        "enrollments_ended": 5,
        "memberships_ended": 0 if keep_access else 1,
    }
    with scopes_disabled():
        cohort = Cohort.objects.get(school=imported, graduation_year=2027)
        assert cohort.status == Cohort.Status.GRADUATED
        assert str(cohort.graduated_on) == "2027-07-20"
        assert Cohort.objects.get(school=imported, graduation_year=2029).status == Cohort.Status.ACTIVE
        assert not SchoolClass.objects.filter(school=imported, status=SchoolClass.Status.ACTIVE).exists()
        assert not Enrollment.objects.filter(school=imported, active=True).exists()
        membership = CohortMembership.objects.get(user=amy, cohort=cohort)
        assert (membership.end_date is None) is keep_access
        # The other school of the trust is untouched.
        assert list(Enrollment.objects.filter(school=dale, active=True).values_list("pk", flat=True)) == dale_before
        event = AuditEvent.objects.get(school=imported, action="school_year.closed")
        assert event.payload == result
        assert AcademicSession.objects.get(school=imported, sourced_id="y2027").closed is True
        assert verify_chain(f"school:{imported.pk}").intact

    result_next = import_bundle(write(tmp_path / "next-year", NEXT_YEAR), today=date(2027, 9, 6))
    with scopes_disabled():
        amy.refresh_from_db()
        # Alumni who keep access keep their account when they leave the SIS; others are disabled.
        assert amy.enabled is keep_access
        assert result_next.counts["users"]["deactivated"] == (0 if keep_access else 1)
        assert SchoolClass.objects.get(sourced_id="cl4").status == SchoolClass.Status.ACTIVE
        assert Enrollment.objects.get(sourced_id="e10").active is True
        ben = CohortMembership.objects.get(user__sourced_id="u2", end_date__isnull=True)
        assert ben.cohort.graduation_year == 2029  # from metadata.cohort, as before
        cat = CohortMembership.objects.get(user__sourced_id="u3", end_date__isnull=True)
        assert cat.cohort.graduation_year == 2029  # grade 11 in the year ending 2028: same cohort as last year
        assert AcademicSession.objects.get(school=imported, sourced_id="y2027").active is False


def test_a_closed_year_cannot_be_closed_again(imported: School) -> None:
    with time_machine.travel(date(2027, 7, 20)):
        close(imported)
        with pytest.raises(CommandError, match="no open school year"):
            close(imported)
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="school_year.closed").count() == 1


def test_a_year_that_has_not_started_is_not_closed(imported: School) -> None:
    with time_machine.travel(date(2026, 8, 1)), pytest.raises(CommandError, match="no open school year"):
        close(imported)


def test_close_year_names_a_missing_school(db: None) -> None:
    with pytest.raises(CommandError, match="no school with id 424242"):
        call_command("close_year", "--school", "424242")


def test_the_admin_closes_a_year_too(client: Client, imported: School) -> None:
    User.objects.create_superuser("op", password="pw")
    with time_machine.travel(date(2027, 7, 20)):
        client.login(username="op", password="pw")
        response = client.post(
            "/admin/classes/school/", {"action": "close_school_year", "_selected_action": [imported.pk]}, follow=True
        )
    assert response.status_code == 200
    assert "Class of 2027 graduated (1 students)" in response.content.decode()
    with scopes_disabled():
        assert Cohort.objects.get(school=imported, graduation_year=2027).status == Cohort.Status.GRADUATED


def test_a_year_far_from_its_end_is_closed_only_on_purpose(imported: School) -> None:
    with time_machine.travel(date(2026, 11, 22)):
        with pytest.raises(CommandError, match="ends on 2027-07-31; it can be closed from 2027-06-05"):
            close(imported)
        out = StringIO()
        call_command("close_year", "--school", str(imported.pk), "--early", stdout=out)
    assert json.loads(out.getvalue())["graduated_cohort"] == 2027


def test_today_is_the_schools_today(imported: School) -> None:
    from classes.services import school_today

    with scopes_disabled():
        School.objects.filter(pk=imported.pk).update(time_zone="Pacific/Auckland")
        imported.refresh_from_db()
    with time_machine.travel("2027-06-04T12:30:00+00:00"):  # already 5 June in Auckland
        assert school_today(imported) == date(2027, 6, 5)
        close(imported)


def test_a_school_admin_closes_their_own_year(client: Client, imported: School) -> None:
    from classes.models import StaffRole

    with scopes_disabled():
        head = User.objects.get(sourced_id="t1")
        StaffRole.objects.create(school=imported, user=head, role=StaffRole.Role.SCHOOL_ADMIN)
        head.set_password("pw")
        head.save()
        dale = School.objects.get(sourced_id="s2")
    with time_machine.travel(date(2027, 7, 20)):
        client.login(username=head.username, password="pw")
        # Dale School is not theirs: selecting it closes nothing there.
        response = client.post(
            "/admin/classes/school/",
            {"action": "close_school_year", "_selected_action": [imported.pk, dale.pk]},
            follow=True,
        )
    assert response.status_code == 200
    with scopes_disabled():
        assert Cohort.objects.get(school=imported, graduation_year=2027).status == Cohort.Status.GRADUATED
        assert not AuditEvent.objects.filter(school=dale, action="school_year.closed").exists()
