"""The room policy: who reads, who posts, and what state a room is in."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from django_scopes import scopes_disabled

from classes.models import CohortStaff, Enrollment, SchoolClass, User
from messaging.models import AcceptableUsePolicy, Mute, PolicyAcceptance, Room
from messaging.policy import RoomNotFound, State, posting_refusal, readable_rooms, room_for, room_state
from tests.conftest import SchoolPeople

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def class_room(people: SchoolPeople, which: str = "school_class") -> Room:
    with scopes_disabled():
        return Room.objects.select_related("school", "school_class", "cohort").get(school_class=getattr(people, which))


def open_room(room: Room) -> Room:
    with scopes_disabled():
        Room.objects.filter(pk=room.pk).update(opened=True)
        room.refresh_from_db()
    return room


READERS = {
    "student": True,
    "other_student": False,
    "teacher": True,
    "other_teacher": False,
    "aide": True,
    "moderator": True,
    "safeguarding_lead": True,
    "admin": False,
}


@pytest.mark.parametrize(("who", "reads"), READERS.items())
def test_who_reads_a_class_room(school_a: SchoolPeople, school_b: SchoolPeople, who: str, reads: bool) -> None:
    room = class_room(school_a)
    user = getattr(school_a, who)
    assert readable_rooms(user, NOON).filter(pk=room.pk).exists() is reads
    if not reads:
        with pytest.raises(RoomNotFound):
            room_for(user, room.pk, NOON)


@pytest.mark.parametrize("room_id", ["other-school", 999_999, "abc", None])
def test_a_forbidden_room_looks_like_no_room(school_a: SchoolPeople, school_b: SchoolPeople, room_id: Any) -> None:
    if room_id == "other-school":
        room_id = class_room(school_b).pk
    with pytest.raises(RoomNotFound):
        room_for(school_a.student, room_id, NOON)
    with pytest.raises(RoomNotFound):
        room_for(AnonymousUser(), class_room(school_a).pk, NOON)


def test_a_moderator_of_some_cohorts_reads_their_rooms_only(school_a: SchoolPeople) -> None:
    from django.db import transaction

    from classes.models import Cohort, StaffRole
    from messaging.rooms import sync_rooms

    with scopes_disabled():
        younger = Cohort.objects.create(school=school_a.school, graduation_year=2030)
        with transaction.atomic():
            sync_rooms([school_a.school.pk])
        StaffRole.objects.get(user=school_a.moderator, role="moderator").cohorts.set([younger])
        assert list(readable_rooms(school_a.moderator, NOON)) == [Room.objects.get(cohort=younger)]
        # Their cohort's students' classes come into view with them.
        StaffRole.objects.get(user=school_a.moderator, role="moderator").cohorts.set([school_a.cohort])
        rooms = set(readable_rooms(school_a.moderator, NOON).values_list("pk", flat=True))
        cohort_room = Room.objects.get(cohort=school_a.cohort).pk
    assert rooms == {cohort_room, class_room(school_a).pk, class_room(school_a, "other_class").pk}


def test_a_cohort_room_is_read_by_members_and_attached_staff(school_a: SchoolPeople) -> None:
    with scopes_disabled():
        room = Room.objects.get(cohort=school_a.cohort)
        assert readable_rooms(school_a.student, NOON).filter(pk=room.pk).exists()
        assert not readable_rooms(school_a.teacher, NOON).filter(pk=room.pk).exists()
        CohortStaff.objects.create(school=school_a.school, cohort=school_a.cohort, user=school_a.teacher)
        assert readable_rooms(school_a.teacher, NOON).filter(pk=room.pk).exists()


def test_an_ended_enrollment_ends_reading(school_a: SchoolPeople) -> None:
    room = class_room(school_a)
    with scopes_disabled():
        Enrollment.objects.filter(user=school_a.student).update(active=False, end_date=date(2026, 11, 1))
    with pytest.raises(RoomNotFound):
        room_for(school_a.student, room.pk, NOON)


def test_an_ended_class_is_read_only_for_those_in_it_on_its_last_day(school_a: SchoolPeople) -> None:
    room = class_room(school_a)
    with scopes_disabled():
        SchoolClass.objects.filter(pk=school_a.school_class.pk).update(status="archived", archived_on=date(2027, 7, 20))
        Enrollment.objects.filter(school_class=school_a.school_class).update(active=False, end_date=date(2027, 7, 20))
        Enrollment.objects.filter(user=school_a.aide).update(end_date=date(2027, 3, 1))  # left before the end
    later = datetime(2027, 9, 1, 12, tzinfo=UTC)
    assert room_state(room_for(school_a.student, room.pk, later), later).state == State.READ_ONLY
    with pytest.raises(RoomNotFound):
        room_for(school_a.aide, room.pk, later)


class TestStates:
    def test_a_class_room_waits_for_its_teacher_unless_the_school_says_otherwise(self, school_a: SchoolPeople) -> None:
        room = class_room(school_a)
        assert room_state(room, NOON).state == State.CLOSED
        school_a.school.class_rooms_start_open = True
        school_a.school.save()
        room.refresh_from_db()
        assert room_state(room, NOON).state == State.OPEN
        with scopes_disabled():
            Room.objects.filter(pk=room.pk).update(opened=False)  # a teacher closed it
        room.refresh_from_db()
        assert room_state(room, NOON).state == State.CLOSED

    def test_a_locked_room_says_why(self, school_a: SchoolPeople) -> None:
        room = open_room(class_room(school_a))
        with scopes_disabled():
            Room.objects.filter(pk=room.pk).update(locked_reason="Cooling off after lunch", locked_by=school_a.teacher)
        room.refresh_from_db()
        assert room_state(room, NOON) == room_state(room, NOON).__class__(State.LOCKED, "Cooling off after lunch")

    def test_a_room_without_an_adult_stays_locked(self, school_a: SchoolPeople) -> None:
        with scopes_disabled():
            room = Room.objects.select_related("school", "cohort").get(cohort=school_a.cohort)  # two students, no staff
        assert room_state(room, NOON).reason == "This room opens when a member of staff joins it."
        with scopes_disabled():
            CohortStaff.objects.create(school=school_a.school, cohort=school_a.cohort, user=school_a.teacher)
        assert room_state(room, NOON).state == State.OPEN

    def test_a_room_of_two_people_waits_for_a_second_adult(self, school_a: SchoolPeople) -> None:
        room = open_room(class_room(school_a, "other_class"))  # one student, one teacher
        state = room_state(room, NOON)
        assert state.state == State.LOCKED
        assert "second adult" in state.reason
        with scopes_disabled():
            Enrollment.objects.create(
                school=school_a.school, school_class=school_a.other_class, user=school_a.aide, role="aide"
            )
        assert room_state(room, NOON).state == State.OPEN

    def test_quiet_hours_in_the_schools_time_zone(self, school_a: SchoolPeople) -> None:
        room = open_room(class_room(school_a))
        school_a.school.quiet_hours_start, school_a.school.quiet_hours_end = time(21, 0), time(7, 0)
        school_a.school.save()
        room.refresh_from_db()
        late = datetime(2026, 11, 23, 22, 30, tzinfo=UTC)  # 22:30 in London in November
        state = room_state(room, late)
        assert state.state == State.QUIET_HOURS
        assert state.opens_at is not None
        assert (
            timezone.localtime(state.opens_at, state.opens_at.tzinfo).strftime("%Y-%m-%d %H:%M") == "2026-11-24 07:00"
        )
        assert room_state(room, NOON).state == State.OPEN


class TestPosting:
    def test_a_member_posts_in_an_open_room_and_a_reader_does_not(self, school_a: SchoolPeople) -> None:
        room = open_room(class_room(school_a))
        assert posting_refusal(school_a.student, room, NOON) is None
        assert posting_refusal(school_a.teacher, room, NOON) is None
        refusal = posting_refusal(school_a.safeguarding_lead, room, NOON)
        assert refusal is not None
        assert refusal.code == "not_a_member"

    def test_a_closed_room_refuses_with_its_reason(self, school_a: SchoolPeople) -> None:
        refusal = posting_refusal(school_a.student, class_room(school_a), NOON)
        assert refusal is not None
        assert (refusal.code, refusal.detail) == ("room_closed", "A teacher has not opened this room for chat.")

    def test_the_acceptable_use_policy_first(self, school_a: SchoolPeople) -> None:
        room = open_room(class_room(school_a))
        with scopes_disabled():
            policy = AcceptableUsePolicy.objects.create(
                school=school_a.school, version=1, text="Be kind.", published=NOON
            )
        refusal = posting_refusal(school_a.student, room, NOON)
        assert refusal is not None
        assert refusal.code == "policy_not_accepted"
        with scopes_disabled():
            PolicyAcceptance.objects.create(school=school_a.school, policy=policy, user=school_a.student, accepted=NOON)
        assert posting_refusal(school_a.student, room, NOON) is None

    def test_under_13_needs_a_parents_consent(self, school_a: SchoolPeople) -> None:
        room = open_room(class_room(school_a))
        student: User = school_a.student
        student.birth_date = date(2014, 1, 1)
        student.save()
        refusal = posting_refusal(student, room, NOON)
        assert refusal is not None
        assert refusal.code == "parental_consent_required"
        student.parental_consent_on = date(2026, 9, 1)
        student.save()
        assert posting_refusal(student, room, NOON) is None

    def test_a_muted_student_is_told_why(self, school_a: SchoolPeople) -> None:
        room = open_room(class_room(school_a))
        with scopes_disabled():
            Mute.objects.create(
                school=school_a.school, room=room, user=school_a.student, reason="Off topic", muted_by=school_a.teacher
            )
        refusal = posting_refusal(school_a.student, room, NOON)
        assert refusal is not None
        assert (refusal.code, refusal.detail) == ("muted", "A teacher has muted you in this room: Off topic")


def test_a_graduated_cohorts_room_is_read_only(school_a: SchoolPeople) -> None:
    with scopes_disabled():
        school_a.cohort.status = "graduated"
        school_a.cohort.save()
        room = Room.objects.select_related("school", "cohort").get(cohort=school_a.cohort)
    assert room_state(room, NOON) == room_state(room, NOON).__class__(State.READ_ONLY, "Class of 2027 has graduated.")
    assert readable_rooms(school_a.student, NOON).filter(pk=room.pk).exists()  # alumni keep reading


def test_quiet_hours_refuse_a_post_with_the_time_it_opens(school_a: SchoolPeople) -> None:
    room = open_room(class_room(school_a))
    school_a.school.quiet_hours_start, school_a.school.quiet_hours_end = time(21, 0), time(7, 0)
    school_a.school.save()
    room.refresh_from_db()
    refusal = posting_refusal(school_a.student, room, datetime(2026, 11, 23, 23, 0, tzinfo=UTC))
    assert refusal is not None
    assert (refusal.code, refusal.detail) == ("room_quiet_hours", "Quiet hours: posting opens again at 07:00.")


PERSONAS = ("student", "other_student", "teacher", "other_teacher", "aide", "moderator", "safeguarding_lead", "admin")


def test_room_for_agrees_with_readable_rooms_everywhere(school_a: SchoolPeople, school_b: SchoolPeople) -> None:
    """`room_for` asks of one room what `readable_rooms` lists; for every person and room, in every
    situation the rules tell apart, the two must agree."""
    from django.db import transaction

    from classes.models import Cohort, CohortMembership, StaffRole
    from messaging.rooms import sync_rooms

    def agree(moment: datetime) -> None:
        answers: set[bool] = set()
        with scopes_disabled():
            rooms = list(Room.objects.all())
            for school in (school_a, school_b):
                for name in PERSONAS:
                    person = User.objects.get(pk=getattr(school, name).pk)
                    listed = set(readable_rooms(person, moment).values_list("pk", flat=True))
                    for room in rooms:
                        try:
                            room_for(person, room.pk, moment)
                            found = True
                        except RoomNotFound:
                            found = False
                        assert found == (room.pk in listed), (name, room, moment)
                        answers.add(found)
        assert answers == {True, False}  # every stage has rooms people read and rooms they do not

    agree(NOON)
    with scopes_disabled():
        younger = Cohort.objects.create(school=school_a.school, graduation_year=2030)
        with transaction.atomic():
            sync_rooms([school_a.school.pk])
        role = StaffRole.objects.get(user=school_a.moderator, role="moderator")
        role.cohorts.set([younger])
        agree(NOON)
        role.cohorts.set([school_a.cohort])  # and so the classes of that cohort's students
        CohortStaff.objects.create(school=school_a.school, cohort=school_a.cohort, user=school_a.teacher)
        CohortMembership.objects.filter(user=school_a.other_student).update(end_date=date(2026, 11, 1))
        agree(NOON)
        Enrollment.objects.filter(user=school_a.student).update(begin_date=date(2026, 12, 1))  # not yet begun
        Enrollment.objects.filter(user=school_a.other_teacher).update(end_date=date(2026, 11, 1))  # over, not closed
        agree(NOON)
        SchoolClass.objects.filter(pk=school_a.school_class.pk).update(status="archived", archived_on=date(2027, 7, 20))
        Enrollment.objects.filter(school_class=school_a.school_class).update(active=False, end_date=date(2027, 7, 20))
        Enrollment.objects.filter(user=school_a.aide).update(end_date=date(2027, 3, 1))
        User.objects.filter(pk=school_b.teacher.pk).update(enabled=False)
    agree(datetime(2027, 9, 1, 12, tzinfo=UTC))
