"""Safeguarding invariants on every path that changes who is in a room (issue 15's broken paths).

Nobody grants themself a place in a room; whoever provisions the school reads none; an adult is an adult
by their own role; a room counts only the people who can take part now, so it never becomes private to
two people. Each test drives the path as a person would: the admin's forms, the roster import, a case's
actions, and checks what `messaging.policy` then answers.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django_scopes import scopes_disabled

from audit.models import AuditEvent
from classes import membership, services
from classes.models import CohortStaff, Enrollment, School, SchoolClass, StaffRole, User
from messaging import policy
from messaging import services as messaging
from messaging.models import Room
from messaging.rooms import sync_rooms
from moderation import cases
from moderation.models import Case
from tests.conftest import SchoolPeople, make_school
from tests.test_import import ENROLLMENTS_HEADER, FILES, USERS_HEADER, first_import, run, write

pytestmark = pytest.mark.django_db


@pytest.fixture
def people() -> SchoolPeople:
    return make_school("Invariant School", "i", open_class_rooms=True)


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def class_room(klass: SchoolClass) -> Room:
    with scopes_disabled():
        return Room.objects.select_related("school", "school_class", "cohort").get(school_class=klass)


def small_class(people: SchoolPeople, *students: User) -> Room:
    """A class of one teacher and these students, with its room (open from the start)."""
    with scopes_disabled():
        klass = SchoolClass.objects.create(school=people.school, title="Small group")
        Enrollment.objects.create(school=people.school, school_class=klass, user=people.teacher, role="teacher")
        for student in students:
            Enrollment.objects.create(school=people.school, school_class=klass, user=student, role="student")
        sync_rooms([people.school.pk])
    return class_room(klass)


def state(room: Room) -> policy.State:
    with scopes_disabled():
        fresh = Room.objects.select_related("school", "school_class", "cohort").get(pk=room.pk)
    return policy.room_state(fresh).state


def reads(user: User, room: Room) -> bool:
    user = User.objects.get(pk=user.pk)
    try:
        policy.room_for(user, room.pk)
    except policy.RoomNotFound:
        return False
    return True


def say(user: User, room: Room, body: str = "hello") -> Any:
    return messaging.send_message(user=User.objects.get(pk=user.pk), room_id=room.pk, client_id=uuid.uuid4(), body=body)


# -- 1 and 2: nobody grants themself a room; whoever provisions reads none ------------------------------------


def test_a_school_admin_cannot_enrol_themself_in_the_admin(people: SchoolPeople) -> None:
    room = class_room(people.school_class)
    say(people.student, room, "before the admin came")
    response = signed_in(people.admin).post(
        "/admin/classes/enrollment/add/",
        {"school_class": people.school_class.pk, "user": people.admin.pk, "role": "aide"},
    )
    assert response.status_code == 200  # the form again, with its error
    assert "Nobody can give themself a place in a room" in response.content.decode()
    with scopes_disabled():
        assert not Enrollment.objects.filter(user=people.admin).exists()
    assert not reads(people.admin, room)
    with pytest.raises(messaging.MessagingError):
        messaging.history(user=people.admin, room_id=room.pk, before=100)


def test_a_school_admin_cannot_attach_themself_to_a_cohort_in_the_admin(people: SchoolPeople) -> None:
    response = signed_in(people.admin).post(
        "/admin/classes/cohortstaff/add/", {"cohort": people.cohort.pk, "user": people.admin.pk}
    )
    assert response.status_code == 200
    assert "Nobody can give themself a place in a room" in response.content.decode()
    with scopes_disabled():
        assert not CohortStaff.objects.filter(user=people.admin).exists()
    assert messaging.ready(user=people.admin) == []


def test_cohort_staff_cannot_be_edited_into_someone_else(people: SchoolPeople) -> None:
    """The old path: change an existing cohort staff row's person to oneself. Rows are attached and
    detached, never edited."""
    with scopes_disabled():
        staff = services.attach_to_cohort(actor=None, cohort=people.cohort, user=people.teacher)
    response = signed_in(people.admin).post(
        f"/admin/classes/cohortstaff/{staff.pk}/change/", {"cohort": people.cohort.pk, "user": people.admin.pk}
    )
    assert response.status_code == 403
    with scopes_disabled():
        assert CohortStaff.objects.get(pk=staff.pk).user == people.teacher


def test_nobody_places_a_school_admin_in_a_room_by_hand(people: SchoolPeople, operator: User) -> None:
    """Not another admin, not a platform operator: the school admin's reach stays provisioning."""
    with scopes_disabled(), pytest.raises(services.ProvisioningError, match="school admin"):
        services.enroll(actor=operator, school_class=people.school_class, user=people.admin, role="teacher")
    with scopes_disabled(), pytest.raises(services.ProvisioningError, match="school admin"):
        services.attach_to_cohort(actor=operator, cohort=people.cohort, user=people.admin)


def test_a_school_admin_reads_no_room_whatever_rows_name_them(people: SchoolPeople) -> None:
    """Rows written before these rules (or by a roster that lists the admin as a teacher) give a school
    admin no reading and no place: the policy does not count them."""
    room = class_room(people.school_class)
    with scopes_disabled():
        Enrollment.objects.create(
            school=people.school, school_class=people.school_class, user=people.admin, role="teacher"
        )
        CohortStaff.objects.create(school=people.school, cohort=people.cohort, user=people.admin)
    assert not reads(people.admin, room)
    assert not policy.readable_rooms(people.admin).exists()
    assert people.admin.pk not in policy.members(room)[0]
    assert not policy.is_moderator_of(people.admin, room)


def test_a_teacher_made_school_admin_leaves_their_rooms(people: SchoolPeople, operator: User) -> None:
    room = class_room(people.school_class)
    assert reads(people.teacher, room)
    with scopes_disabled():
        services.grant_role(actor=operator, school=people.school, user=people.teacher, role="school_admin")
    assert not reads(people.teacher, room)
    assert people.teacher.pk not in policy.members(room)[0]


def test_an_adult_placed_by_hand_is_told_to_the_safeguarding_lead(
    people: SchoolPeople, django_capture_on_commit_callbacks: Any
) -> None:
    people.safeguarding_lead.email = "dsl@example.org"
    people.safeguarding_lead.save()
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in(people.admin).post(
            "/admin/classes/enrollment/add/",
            {"school_class": people.school_class.pk, "user": people.other_teacher.pk, "role": "teacher"},
        )
        assert response.status_code == 302
    cases.wait_for_email()
    with scopes_disabled():
        told = AuditEvent.objects.get(action="safeguarding_lead.told")
    assert told.actor_id == people.admin.pk
    assert told.payload["person"] == people.other_teacher.username
    assert told.payload["told"] == [people.safeguarding_lead.username]
    assert told.payload["emailed"] == ["dsl@example.org"]
    assert [m.to for m in mail.outbox] == [["dsl@example.org"]]
    assert people.other_teacher.username in mail.outbox[0].body or "Otherteacher" in mail.outbox[0].body


def test_students_and_the_roster_are_not_told_to_the_safeguarding_lead(people: SchoolPeople) -> None:
    """A student placed by hand, or anyone placed by the system (the import, the seed), is routine."""
    with scopes_disabled():
        services.enroll(actor=people.admin, school_class=people.other_class, user=people.student, role="student")
        services.enroll(actor=None, school_class=people.other_class, user=people.aide, role="aide")
        assert not AuditEvent.objects.filter(action="safeguarding_lead.told").exists()


# -- 3: a room becomes private to two people ------------------------------------------------------------------


def test_disabling_a_student_in_the_admin_locks_a_room_of_two(people: SchoolPeople) -> None:
    room = small_class(people, people.student, people.other_student)
    assert state(room) == policy.State.OPEN
    client = signed_in(people.admin)
    url = f"/admin/classes/user/{people.other_student.pk}/change/"
    form = {
        "username": people.other_student.username,
        "given_name": "Other",
        "family_name": "Student",
        "email": "",
        "birth_date": "",
        "grade": "",
        "role": "student",
        # "enabled" left out: the box is unticked
    }
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert people.other_student.pk not in policy.members(room)[0]
    assert state(room) == policy.State.LOCKED
    refusal = messaging.MessagingError
    with pytest.raises(refusal) as refused:
        say(people.teacher, room, "just us now")
    assert refused.value.code == "room_locked"
    client.post(url, {**form, "enabled": "on"})
    assert state(room) == policy.State.OPEN


def test_suspending_a_student_from_a_case_locks_a_room_of_two(people: SchoolPeople) -> None:
    room = small_class(people, people.student, people.other_student)
    message = say(people.other_student, room, "this is mean").message
    messaging.report_message(user=people.student, message_id=message.pk, category="bullying", note="")
    with scopes_disabled():
        case = Case.objects.get(message_id=message.pk)
    cases.take_action(user=people.moderator, case_id=case.pk, action="suspend_author", reason="Bullying")
    assert state(room) == policy.State.LOCKED
    assert people.other_student.pk not in policy.members(room)[0]
    cases.take_action(user=people.moderator, case_id=case.pk, action="restore_author", reason="Spoken to")
    assert state(room) == policy.State.OPEN


def test_an_enrollment_not_yet_begun_or_already_ended_does_not_count(people: SchoolPeople) -> None:
    room = small_class(people, people.student)
    with scopes_disabled():
        Enrollment.objects.create(
            school=people.school,
            school_class=people.school_class if room.school_class is None else room.school_class,
            user=people.other_student,
            role="student",
            begin_date=date(2999, 1, 1),
        )
    assert state(room) == policy.State.LOCKED  # one teacher and one student today


# -- 4: a student counts as an adult ---------------------------------------------------------------------------


def test_the_admin_refuses_to_enrol_a_student_as_an_aide(people: SchoolPeople) -> None:
    response = signed_in(people.admin).post(
        "/admin/classes/enrollment/add/",
        {"school_class": people.other_class.pk, "user": people.student.pk, "role": "aide"},
    )
    assert response.status_code == 200
    assert "A student can only be enrolled as a student" in response.content.decode()
    with scopes_disabled():
        assert not Enrollment.objects.filter(user=people.student, school_class=people.other_class).exists()


def test_a_student_enrolled_as_an_aide_is_still_a_student(people: SchoolPeople) -> None:
    """A row from before these rules: the person's own role decides, so the room does not open."""
    with scopes_disabled():
        klass = SchoolClass.objects.create(school=people.school, title="Pair")
        Enrollment.objects.create(school=people.school, school_class=klass, user=people.teacher, role="teacher")
        Enrollment.objects.create(school=people.school, school_class=klass, user=people.student, role="aide")
        sync_rooms([people.school.pk])
    room = class_room(klass)
    everyone, adults = policy.members(room)
    assert (everyone, adults) == ({people.teacher.pk, people.student.pk}, {people.teacher.pk})
    assert state(room) == policy.State.LOCKED


def test_the_admin_refuses_to_make_an_enrolled_student_a_teacher(people: SchoolPeople) -> None:
    url = f"/admin/classes/user/{people.student.pk}/change/"
    response = signed_in(people.admin).post(
        url,
        {
            "username": people.student.username,
            "given_name": "Student",
            "family_name": "Test",
            "email": "",
            "birth_date": "",
            "grade": "",
            "role": "teacher",
            "enabled": "on",
        },
    )
    assert response.status_code == 200
    assert "End their enrollments first" in response.content.decode()
    assert User.objects.get(pk=people.student.pk).role == User.Role.STUDENT


def test_a_staff_member_is_not_enrolled_as_a_student() -> None:
    assert membership.enrollment_role_misfit(User.Role.TEACHER, "student") is not None
    assert membership.enrollment_role_misfit(User.Role.ADMINISTRATOR, "aide") is None
    assert membership.enrollment_role_misfit(User.Role.STUDENT, "student") is None
    assert membership.enrollment_role_misfit(User.Role.STUDENT, "teacher") is not None


# -- the roster import ---------------------------------------------------------------------------------------


def test_the_import_refuses_a_student_listed_as_an_administrator_of_a_class(tmp_path: Path) -> None:
    files = {
        **FILES,
        "enrollments": FILES["enrollments"].replace("e3,,,cl1,s1,a1,aide", "e3,,,cl1,s1,u2,administrator"),
    }
    code, _, err = run(write(tmp_path / "b", files))
    assert code == 2
    assert "enrollments.csv:4: role: A student can only be enrolled as a student" in err
    with scopes_disabled():
        assert not User.objects.exists()  # nothing was written


def test_a_delta_cannot_turn_an_enrolled_student_into_a_teacher(tmp_path: Path) -> None:
    first_import(tmp_path)
    delta = {"users": USERS_HEADER + "\nu1,,,true,s1,teacher,amy.hill,,Amy,Hill,,1001,,,,,12,,,\n"}
    modes = dict.fromkeys(FILES, "absent") | {"users": "delta"}
    code, _, err = run(write(tmp_path / "delta", delta, modes))
    assert code == 2
    assert "users.csv:2: role:" in err
    assert "an enrollment this bundle keeps" in err
    with scopes_disabled():
        assert User.objects.get(sourced_id="u1").role == User.Role.STUDENT


def test_an_importer_cannot_enrol_themself(tmp_path: Path) -> None:
    from classes.roster_import import InvalidBundle, import_bundle

    first_import(tmp_path)
    with scopes_disabled():
        teacher = User.objects.get(sourced_id="t1")
        StaffRole.objects.create(school=School.objects.get(sourced_id="s1"), user=teacher, role="school_admin")
    delta = {"enrollments": ENROLLMENTS_HEADER + "\ne9,,,cl2,dep1,t1,teacher,false,,\n"}
    modes = dict.fromkeys(FILES, "absent") | {"enrollments": "delta"}
    with pytest.raises(InvalidBundle) as invalid:
        import_bundle(write(tmp_path / "delta", delta, modes), actor=teacher)
    assert [str(p) for p in invalid.value.problems] == [
        "enrollments.csv:2: userSourcedId: is your own account: nobody can give themself a place in a room; "
        "ask another admin or a platform operator"
    ]
    # The same bundle from someone else is an ordinary change, with a warning: the enrollment is kept, but
    # a school admin takes part in no room while they hold that role.
    code, out, err = run(write(tmp_path / "delta2", delta, modes))
    assert code == 0, err
    assert "enrollments.csv:2: userSourcedId: 'ms.teach' is a school admin in Commonroom" in out + err
    with scopes_disabled():
        room = Room.objects.select_related("school").get(school_class__sourced_id="cl2")
    assert teacher.pk not in policy.members(room)[0]


def test_rooms_made_by_another_school_are_untouched(people: SchoolPeople) -> None:
    other = make_school("Elsewhere", "x", open_class_rooms=True)
    with scopes_disabled(), pytest.raises(services.ProvisioningError):
        services.enroll(actor=people.admin, school_class=other.school_class, user=people.teacher, role="teacher")
