"""The admin is scoped: a school admin provisions their school only; audit data is for operators only."""

from __future__ import annotations

import pytest
from django.test import Client
from django_scopes import scopes_disabled

from audit.models import AuditEvent
from classes.models import Cohort, Enrollment, Organisation, School, StaffRole, User
from moderation.models import ModerationSettings, ScreeningRule
from moderation.rules import screen_for
from tests.conftest import SchoolPeople

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "school",
    "academicsession",
    "cohort",
    "schoolclass",
    "enrollment",
    "staffrole",
    "user",
]


def _login(client: Client, user: User) -> None:
    assert client.login(username=user.username, password="pw")


@pytest.mark.parametrize("model", CHANGELISTS)
def test_a_school_admin_lists_only_their_school(
    client: Client, school_a: SchoolPeople, school_b: SchoolPeople, model: str
) -> None:
    _login(client, school_a.admin)
    response = client.get(f"/admin/classes/{model}/")
    assert response.status_code == 200
    rows = list(response.context["cl"].result_list)
    assert rows
    for row in rows:
        school_id = row.pk if isinstance(row, School) else row.school_id
        assert school_id == school_a.school.pk


@pytest.mark.parametrize(
    ("model", "attribute"),
    [("school", "school"), ("schoolclass", "school_class"), ("user", "student"), ("cohort", "cohort")],
)
def test_another_schools_object_is_not_found(
    client: Client, school_a: SchoolPeople, school_b: SchoolPeople, model: str, attribute: str
) -> None:
    _login(client, school_a.admin)
    target = getattr(school_b, attribute)
    response = client.get(f"/admin/classes/{model}/{target.pk}/change/")
    # The admin answers a missing object with a redirect to the index and a message;
    # another school's object gets exactly that answer.
    missing = client.get(f"/admin/classes/{model}/999999/change/")
    assert response.status_code == missing.status_code == 302
    assert response["Location"] == missing["Location"] == "/admin/"


@pytest.mark.parametrize("page", ["change", "history"])
def test_an_object_the_admin_may_not_see_answers_as_a_missing_one(
    client: Client, school_a: SchoolPeople, school_b: SchoolPeople, page: str
) -> None:
    """Departments (operators only), and audit events, for a school admin: one that exists and one that
    does not get the same answer, on the history page too (Django's looks the object up first)."""
    with scopes_disabled():
        department = Organisation.objects.create(name="Science", kind=Organisation.Kind.DEPARTMENT)
        event = AuditEvent.objects.filter(school_id=school_b.school.pk).first()
    assert event is not None
    _login(client, school_a.admin)
    for model, pk in (("classes/organisation", department.pk), ("audit/auditevent", event.pk)):
        there = client.get(f"/admin/{model}/{pk}/{page}/")
        missing = client.get(f"/admin/{model}/99999999/{page}/")
        assert there.status_code == missing.status_code == 403, model
        assert there.content == missing.content


@pytest.mark.parametrize("role", ["student", "teacher", "moderator", "safeguarding_lead"])
def test_people_without_a_provisioning_role_are_kept_out(client: Client, school_a: SchoolPeople, role: str) -> None:
    _login(client, getattr(school_a, role))
    response = client.get("/admin/classes/schoolclass/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_school_settings_changes_are_audited(client: Client, school_a: SchoolPeople) -> None:
    _login(client, school_a.admin)
    response = client.post(
        f"/admin/classes/school/{school_a.school.pk}/change/",
        {
            "name": school_a.school.name,
            "time_zone": "America/New_York",
            "final_grade": 12,
            "alumni_keep_access": "",
            "edit_window_minutes": 15,
            "under_13_needs_consent": "on",
        },
    )
    assert response.status_code == 302, response.content
    with scopes_disabled():
        school = School.objects.get(pk=school_a.school.pk)
        assert school.time_zone == "America/New_York"
        assert school.alumni_keep_access is False
        event = AuditEvent.objects.get(action="school.settings_changed")
    assert event.actor_id == school_a.admin.pk
    assert event.payload == {
        "old": {"time_zone": "Europe/London", "alumni_keep_access": True},
        "new": {"time_zone": "America/New_York", "alumni_keep_access": False},
    }


def test_a_bad_time_zone_is_refused(client: Client, school_a: SchoolPeople) -> None:
    _login(client, school_a.admin)
    response = client.post(
        f"/admin/classes/school/{school_a.school.pk}/change/",
        {
            "name": school_a.school.name,
            "time_zone": "Mars/Olympus",
            "final_grade": 12,
            "alumni_keep_access": "on",
            "edit_window_minutes": 15,
        },
    )
    assert response.status_code == 200
    assert "is not a known time zone" in response.content.decode()


def test_granting_a_role_is_audited_and_stays_in_school(
    client: Client, school_a: SchoolPeople, school_b: SchoolPeople
) -> None:
    _login(client, school_a.admin)
    response = client.post("/admin/classes/staffrole/add/", {"user": school_a.aide.pk, "role": "teacher"})
    assert response.status_code == 302, response.content
    with scopes_disabled():
        assert StaffRole.objects.get(user=school_a.aide, role="teacher").source == StaffRole.Source.MANUAL
        event = AuditEvent.objects.get(action="staff_role.granted", school=school_a.school)
        assert (event.actor_id, event.payload["role"]) == (school_a.admin.pk, "teacher")
    # Someone of another school is not a choice.
    response = client.post("/admin/classes/staffrole/add/", {"user": school_b.teacher.pk, "role": "teacher"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    with scopes_disabled():
        assert not StaffRole.objects.filter(user=school_b.teacher, role="teacher", school=school_a.school).exists()


def test_an_operator_appoints_a_moderator_for_some_cohorts(
    client: Client, school_a: SchoolPeople, operator: User
) -> None:
    _login(client, operator)
    response = client.post(
        "/admin/classes/staffrole/add/",
        {"user": school_a.teacher.pk, "role": "moderator", "cohorts": [school_a.cohort.pk]},
    )
    assert response.status_code == 302, response.content
    with scopes_disabled():
        role = StaffRole.objects.get(user=school_a.teacher, role="moderator")
        assert list(role.cohorts.all()) == [school_a.cohort]
        assert AuditEvent.objects.get(action="staff_role.granted", school=school_a.school).actor_id == operator.pk


def test_revoking_and_ending_are_audited(client: Client, school_a: SchoolPeople) -> None:
    _login(client, school_a.admin)
    with scopes_disabled():
        role = StaffRole.objects.get(user=school_a.other_teacher, role="teacher")
        enrollment = Enrollment.objects.get(user=school_a.student)
    client.post("/admin/classes/staffrole/", {"action": "revoke_roles", "_selected_action": [role.pk]})
    client.post("/admin/classes/enrollment/", {"action": "end_enrollments", "_selected_action": [enrollment.pk]})
    with scopes_disabled():
        role.refresh_from_db()
        enrollment.refresh_from_db()
        assert role.active is False
        assert enrollment.active is False
        assert enrollment.end_date is not None
        actions = set(AuditEvent.objects.filter(actor=school_a.admin).values_list("action", flat=True))
    assert {"staff_role.revoked", "enrollment.ended"} <= actions


def test_nothing_can_be_deleted_from_the_admin(client: Client, school_a: SchoolPeople) -> None:
    _login(client, school_a.admin)
    response = client.get(f"/admin/classes/schoolclass/{school_a.school_class.pk}/delete/")
    assert response.status_code == 403


def test_the_audit_log_is_for_operators_and_their_reading_is_audited(
    client: Client, school_a: SchoolPeople, operator: User
) -> None:
    _login(client, school_a.admin)
    assert client.get("/admin/audit/auditevent/").status_code == 403
    client.logout()
    _login(client, operator)
    asked = client.get("/admin/audit/auditevent/?q=roster")  # a reason first (tests/test_reading_on_record.py)
    assert asked["Location"] == "/admin/audit/auditevent/reason/?next=/admin/audit/auditevent/%3Fq%3Droster"
    client.post("/admin/audit/auditevent/reason/", {"reason": "audit", "text": ""})
    response = client.get("/admin/audit/auditevent/?q=roster")
    assert response.status_code == 200
    with scopes_disabled():
        viewed = AuditEvent.objects.filter(action="audit.viewed").get()
    assert viewed.actor_id == operator.pk
    assert viewed.payload == {"query": "q=roster", "reason": "audit", "reason_text": "", "schools": []}
    response = client.get(f"/admin/audit/auditevent/{viewed.pk}/change/")
    assert response.status_code == 200
    assert b"Save" not in response.content  # read-only


def test_generic_admin_changes_are_audited(client: Client, school_a: SchoolPeople, school_b: SchoolPeople) -> None:
    _login(client, school_a.admin)
    response = client.post("/admin/classes/cohort/add/", {"graduation_year": 2031})
    assert response.status_code == 302, response.content
    response = client.post(
        f"/admin/classes/schoolclass/{school_a.school_class.pk}/change/",
        {
            "title": "English 12A (set 1)",
            "code": "ENG12A",
            "course_title": "",
            "course_code": "",
            "status": "active",
            "terms": [school_a.year.pk],
        },
    )
    assert response.status_code == 302, response.content
    with scopes_disabled():
        cohort = Cohort.objects.get(graduation_year=2031)
        assert cohort.school == school_a.school  # placed in the admin's school, whatever the form said
        created = AuditEvent.objects.get(action="cohort.created")
        updated = AuditEvent.objects.get(action="schoolclass.updated")
    assert (created.school_id, created.actor_id) == (school_a.school.pk, school_a.admin.pk)
    assert updated.payload == {"fields": ["title"], "via": "admin"}


@pytest.mark.parametrize(("who", "allowed"), [("admin", True), ("teacher", False), ("safeguarding_lead", False)])
def test_signing_in_through_the_admin_form(client: Client, school_a: SchoolPeople, who: str, allowed: bool) -> None:
    user = getattr(school_a, who)
    assert user.is_staff is False  # roles, not Django's is_staff, decide who provisions
    response = client.post("/admin/login/?next=/admin/", {"username": user.username, "password": "pw"})
    if allowed:
        assert response.status_code == 302
        assert response["Location"] == "/admin/"
        assert client.get("/admin/").status_code == 200
    else:
        assert response.status_code == 200
        assert "Please enter the correct username and password" in response.content.decode()


def test_a_school_admin_cannot_take_over_the_safeguarding_lead(client: Client, school_a: SchoolPeople) -> None:
    _login(client, school_a.admin)
    url = f"/admin/classes/user/{school_a.safeguarding_lead.pk}/password/"
    response = client.post(url, {"password1": "a-new-Password-1", "password2": "a-new-Password-1"})
    assert response.status_code == 403
    school_a.safeguarding_lead.refresh_from_db()
    assert school_a.safeguarding_lead.check_password("pw")
    # Nor give themselves the role.
    response = client.post("/admin/classes/staffrole/add/", {"user": school_a.admin.pk, "role": "safeguarding_lead"})
    assert response.status_code == 403
    # Nor take the role away, so that the account becomes theirs to reset, and hand it back.
    with scopes_disabled():
        dsl_role = StaffRole.objects.get(user=school_a.safeguarding_lead, role="safeguarding_lead")
    response = client.post(
        "/admin/classes/staffrole/", {"action": "revoke_roles", "_selected_action": [dsl_role.pk]}, follow=True
    )
    assert "Only a platform operator can appoint or remove" in response.content.decode()
    dsl_role.refresh_from_db()
    assert dsl_role.active is True
    # Nor make a new account of their own into a safeguarding lead.
    response = client.post(
        "/admin/classes/user/add/",
        {"username": "new.dsl", "given_name": "New", "family_name": "Lead", "role": "staff",
         "password1": "a-new-Password-1", "password2": "a-new-Password-1"},
    )  # fmt: skip
    assert response.status_code == 302, response.content
    newcomer = User.objects.get(username="new.dsl")
    response = client.post("/admin/classes/staffrole/add/", {"user": newcomer.pk, "role": "safeguarding_lead"})
    assert response.status_code == 403
    with scopes_disabled():
        assert (
            not StaffRole.objects.filter(role="safeguarding_lead", active=True)
            .exclude(user=school_a.safeguarding_lead)
            .exists()
        )


def test_setting_a_students_password_is_audited(client: Client, school_a: SchoolPeople) -> None:
    _login(client, school_a.admin)
    url = f"/admin/classes/user/{school_a.student.pk}/password/"
    response = client.post(url, {"password1": "a-new-Password-1", "password2": "a-new-Password-1"})
    assert response.status_code == 302
    school_a.student.refresh_from_db()
    assert school_a.student.check_password("a-new-Password-1")
    with scopes_disabled():
        event = AuditEvent.objects.get(action="person.password_set")
    assert (event.actor_id, event.target_id, event.payload) == (school_a.admin.pk, str(school_a.student.pk), {})


def test_the_admin_cannot_change_or_delete_an_event(client: Client, school_a: SchoolPeople, operator: User) -> None:
    from django.db import transaction

    from audit.services import record

    with transaction.atomic():
        event = record("test.happened", school_id=school_a.school.pk, payload={"n": 1}, fetch=True)
    assert event is not None
    _login(client, operator)
    assert client.post(f"/admin/audit/auditevent/{event.pk}/change/", {"action": "forged"}).status_code == 403
    assert client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.post("/admin/audit/auditevent/add/", {"action": "forged"}).status_code == 403
    with scopes_disabled():
        stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.action, stored.payload) == ("test.happened", {"n": 1})


def test_a_school_admin_publishes_the_acceptable_use_policy(client: Client, school_a: SchoolPeople) -> None:
    from messaging.models import AcceptableUsePolicy

    _login(client, school_a.admin)
    for text in ("Be kind.", "Be kind, always."):
        response = client.post("/admin/messaging/acceptableusepolicy/add/", {"text": text})
        assert response.status_code == 302, response.content
    with scopes_disabled():
        versions = list(AcceptableUsePolicy.objects.order_by("version").values_list("school_id", "version", "text"))
        assert versions == [(school_a.school.pk, 1, "Be kind."), (school_a.school.pk, 2, "Be kind, always.")]
        assert AuditEvent.objects.filter(action="policy.published", actor=school_a.admin).count() == 2
        first = AcceptableUsePolicy.objects.get(version=1)
    response = client.post(f"/admin/messaging/acceptableusepolicy/{first.pk}/change/", {"text": "Rewritten"})
    assert response.status_code == 403


def test_a_school_admin_sets_screening_rules_and_escalation_for_their_school_only(
    client: Client, school_a: SchoolPeople, school_b: SchoolPeople
) -> None:
    _login(client, school_a.admin)
    response = client.post(
        "/admin/moderation/screeningrule/add/",
        {"category": "bullying", "action": "hold", "severity": "", "phrases": "bike sheds\nround the back"},
    )
    assert response.status_code == 302, response.content
    assert screen_for("see you round the back", school_a.school.pk).action == "hold"  # at once in this process
    assert screen_for("see you round the back", school_b.school.pk).action == "allow"
    with scopes_disabled():
        rule = ScreeningRule.objects.get()
        assert (rule.school_id, rule.severity) == (school_a.school.pk, None)
        assert AuditEvent.objects.filter(action="screeningrule.created", school=school_a.school).exists()
    # Settings: the person named for allegations against staff must be of the school.
    answer = client.post(
        "/admin/moderation/moderationsettings/add/",
        {"level_1_minutes": 20, "level_2_minutes": 10, "level_3_minutes": 5, "allegations_contact": school_b.admin.pk},
    )
    assert "Select a valid choice" in answer.content.decode()
    settings = {"level_1_minutes": 20, "level_2_minutes": 10, "level_3_minutes": 5}
    # The school's admin does not read cases; a student cannot; a teacher could not act in every room.
    for unsuitable in (school_a.admin, school_a.student, school_a.teacher):
        answer = client.post(
            "/admin/moderation/moderationsettings/add/", {**settings, "allegations_contact": unsuitable.pk}
        )
        assert answer.status_code == 200
        assert "allegations_contact" in answer.context["adminform"].form.errors
    answer = client.post(
        "/admin/moderation/moderationsettings/add/", {**settings, "allegations_contact": school_a.moderator.pk}
    )
    assert answer.status_code == 302, answer.content
    assert client.get("/admin/moderation/moderationsettings/add/").status_code == 403  # one per school
    _login(client, school_b.admin)
    assert "bike sheds" not in client.get(f"/admin/moderation/screeningrule/{rule.pk}/change/").content.decode()
    assert client.get("/admin/moderation/screeningrule/").content.decode().count("Bullying") == 0
    with scopes_disabled():
        assert ModerationSettings.objects.get().school_id == school_a.school.pk
