"""A Hypothesis state machine over roster and admin operations, checking the safeguarding invariants
after every step.

Operations, as an admin, a platform operator, a moderator or the person themself would do them: enrol and
unenrol students and adults with any enrollment role, attach and detach cohort staff, disable and enable
accounts, suspend and lift from a case, make staff school admins and revoke it, archive a class, and
close the year. After every step:

- no open room has exactly two people taking part unless both are adults, and none lacks an adult;
- who takes part in each room is what an independent reading of the rows says (enabled, not suspended,
  enrolled today, not a school admin), and every adult is an adult by their own role;
- nobody who provisions the school reads a room;
- the last `room_state` published for each room equals the state `messaging.policy` computes now;
- each refused operation was refused for a reason the invariants name, and each allowed one happened.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import hypothesis
import pytest
from django.db import connection
from django.test import TestCase
from django_scopes import scopes_disabled
from hypothesis import HealthCheck
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from classes import services
from classes.models import CohortStaff, Enrollment, SchoolClass, StaffRole, User
from messaging import policy
from messaging import services as messaging
from messaging.models import Room
from messaging.rooms import sync_rooms
from moderation import cases
from moderation.models import Case
from tests.conftest import _person, make_school

pytestmark = pytest.mark.django_db

SCHOOLS = itertools.count(1)
ROLES = ["student", "teacher", "aide"]
CLASSES = ["A", "B", "C"]


class RosterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.published: dict[int, str] = {}
        messaging.subscribe(self._heard)
        number = next(SCHOOLS)
        with scopes_disabled(), self._step():
            p = make_school(f"Roster School {number}", f"r{number}", open_class_rooms=True)
            self.school, self.admin = p.school, p.admin
            self.lead, self.cohort = p.safeguarding_lead, p.cohort
            self.operator = User.objects.create_superuser(f"r{number}.operator", password="pw")
            third = _person(p.school, f"r{number}.third", User.Role.STUDENT)
            fourth = _person(p.school, f"r{number}.fourth", User.Role.STUDENT)
            small = SchoolClass.objects.create(school=p.school, title=f"r{number} Small group")
            small.terms.add(p.year)
            sync_rooms([p.school.pk])
            self.classes = {"A": p.school_class, "B": p.other_class, "C": small}
            for user in (third, fourth):
                services.enroll(actor=None, school_class=p.school_class, user=user, role="student")
            services.enroll(actor=None, school_class=small, user=p.teacher, role="teacher")
            self.people: dict[str, User] = {
                "student": p.student,
                "other_student": p.other_student,
                "third": third,
                "fourth": fourth,
                "teacher": p.teacher,
                "other_teacher": p.other_teacher,
                "aide": p.aide,
                "moderator": p.moderator,
                "admin": p.admin,
            }
            self.rooms = {name: Room.objects.get(school_class=klass).pk for name, klass in self.classes.items()} | {
                "cohort": Room.objects.get(cohort=p.cohort).pk
            }
            # A case about each of three students' messages, for suspending and lifting.
            self.cases: dict[str, int] = {}
            for name in ("student", "third", "fourth"):
                sent = messaging.send_message(
                    user=self.people[name], room_id=self.rooms["A"], client_id=uuid.uuid4(), body=f"{name} was here"
                )
                messaging.report_message(user=p.aide, message_id=sent.message.pk, category="bullying", note="")
                self.cases[name] = Case.objects.get(message_id=sent.message.pk).pk
            self.year_closed = False
        for name, room in self.rooms.items():
            self.published.setdefault(room, self._state(name).state.value)

    def teardown(self) -> None:
        messaging._publishers.remove(self._heard)

    def _heard(self, room: Room, event: dict[str, Any]) -> None:
        if event.get("type") == "room_state":
            self.published[room.pk] = event["state"]

    @staticmethod
    def _step() -> Any:
        """One operation: its after-commit work (live events among it) runs when it is done."""
        return TestCase.captureOnCommitCallbacks(execute=True)

    def _fresh(self, name: str) -> User:
        return User.objects.get(pk=self.people[name].pk)

    def _room(self, name: str) -> Room:
        with scopes_disabled():
            return Room.objects.select_related("school", "school_class", "cohort").get(pk=self.rooms[name])

    def _state(self, name: str) -> policy.RoomState:
        return policy.room_state(self._room(name))

    def _admins(self) -> set[int]:
        with scopes_disabled():
            return set(
                StaffRole.objects.filter(school=self.school, role="school_admin", active=True).values_list(
                    "user_id", flat=True
                )
            )

    def _attempt(self, expect_refusal: bool, work: Any) -> None:
        with scopes_disabled(), self._step():
            refused: Exception | None = None
            try:
                work()
            except (services.ProvisioningError, cases.CaseError) as error:
                refused = error
            assert (refused is not None) == expect_refusal, refused or "done, though it should have been refused"

    def _actor(self, who: str, person: str) -> User:
        return {"admin": self.admin, "operator": self.operator, "self": self._fresh(person)}[who]

    # -- operations ------------------------------------------------------------------------------------

    @rule(
        who=st.sampled_from(["admin", "operator", "self"]),
        person=st.sampled_from(["student", "other_student", "third", "teacher", "other_teacher", "aide", "admin"]),
        klass=st.sampled_from(CLASSES),
        role=st.sampled_from(ROLES),
    )
    def enrol(self, who: str, person: str, klass: str, role: str) -> None:
        user, school_class = self._fresh(person), self.classes[klass]
        with scopes_disabled():
            school_class.refresh_from_db()
            already = Enrollment.objects.filter(school_class=school_class, user=user, active=True).exists()
        misfit = (user.role == User.Role.STUDENT) != (role == "student")
        refused = (
            misfit
            or already
            or school_class.status != SchoolClass.Status.ACTIVE
            or who == "self"
            or user.pk in self._admins()
        )
        self._attempt(
            refused,
            lambda: services.enroll(actor=self._actor(who, person), school_class=school_class, user=user, role=role),
        )

    @rule(
        person=st.sampled_from(["student", "other_student", "third", "fourth", "teacher", "aide"]),
        klass=st.sampled_from(CLASSES),
    )
    def unenrol(self, person: str, klass: str) -> None:
        with scopes_disabled(), self._step():
            for enrollment in Enrollment.objects.filter(
                school_class=self.classes[klass], user=self.people[person], active=True
            ):
                services.end_enrollment(actor=self.admin, enrollment=enrollment, reason="moved")

    @rule(
        who=st.sampled_from(["admin", "operator", "self"]),
        person=st.sampled_from(["student", "teacher", "other_teacher", "aide", "admin"]),
    )
    def attach(self, who: str, person: str) -> None:
        user = self._fresh(person)
        refused = user.role == User.Role.STUDENT or who == "self" or user.pk in self._admins()
        self._attempt(
            refused, lambda: services.attach_to_cohort(actor=self._actor(who, person), cohort=self.cohort, user=user)
        )

    @rule(person=st.sampled_from(["teacher", "other_teacher", "aide"]))
    def detach(self, person: str) -> None:
        with scopes_disabled(), self._step():
            for staff in CohortStaff.objects.filter(cohort=self.cohort, user=self.people[person], active=True):
                services.detach_from_cohort(actor=self.admin, staff=staff)

    @rule(
        person=st.sampled_from(["student", "other_student", "third", "fourth", "teacher", "other_teacher", "aide"]),
        enabled=st.booleans(),
    )
    def disable_or_enable(self, person: str, enabled: bool) -> None:
        user = self._fresh(person)
        user.enabled = enabled
        with scopes_disabled(), self._step():
            services.save_provisioned(actor=self.admin, obj=user, action="person.updated", fields=["enabled"])

    @rule(person=st.sampled_from(["student", "third", "fourth"]), suspend=st.booleans())
    def suspend_or_lift(self, person: str, suspend: bool) -> None:
        suspended = self._fresh(person).suspended
        action = "suspend_author" if suspend else "restore_author"
        self._attempt(
            suspended == suspend,
            lambda: cases.take_action(
                user=User.objects.get(pk=self.lead.pk), case_id=self.cases[person], action=action, reason="A reason"
            ),
        )

    @rule(person=st.sampled_from(["teacher", "other_teacher", "aide"]), grant=st.booleans())
    def school_admin_role(self, person: str, grant: bool) -> None:
        user = self._fresh(person)
        with scopes_disabled(), self._step():
            if grant:
                services.grant_role(actor=self.operator, school=self.school, user=user, role="school_admin")
            else:
                for role in StaffRole.objects.filter(user=user, role="school_admin", active=True):
                    services.revoke_role(actor=self.operator, staff_role=role)

    @rule(klass=st.sampled_from(CLASSES))
    def archive(self, klass: str) -> None:
        school_class = self.classes[klass]
        with scopes_disabled(), self._step():
            school_class.refresh_from_db()
            school_class.status = SchoolClass.Status.ARCHIVED
            services.save_provisioned(actor=self.admin, obj=school_class, action="class.updated", fields=["status"])

    @precondition(lambda self: not self.year_closed)
    @rule()
    def close_the_year(self) -> None:
        with scopes_disabled(), self._step():
            services.close_year(actor=self.admin, school=self.school, early=True)
        self.year_closed = True

    # -- invariants ---------------------------------------------------------------------------------------

    def _taking_part(self, name: str) -> tuple[set[int], set[int]]:
        """Who takes part in a room, read plainly from the rows (not through `classes.membership`)."""
        admins = self._admins()
        with scopes_disabled():
            rows: list[Any]
            if name == "cohort":
                rows = [
                    *self.cohort.memberships.filter(end_date__isnull=True).select_related("user"),
                    *self.cohort.staff.filter(active=True).select_related("user"),
                ]
            else:
                rows = list(self.classes[name].enrollments.filter(active=True).select_related("user"))
        people = {r.user for r in rows if r.user.enabled and not r.user.suspended and r.user.pk not in admins}
        return {u.pk for u in people}, {u.pk for u in people if u.role != User.Role.STUDENT}

    @invariant()
    def no_room_is_private_to_two_or_without_an_adult(self) -> None:
        for name in self.rooms:
            everyone, adults = self._taking_part(name)
            assert policy.members(self._room(name)) == (everyone, adults), name
            if self._state(name).state == policy.State.OPEN:
                assert adults, f"room {name} is open without an adult"
                assert len(everyone) != 2 or len(adults) == 2, f"room {name} is open to two people: {everyone}"

    @invariant()
    def whoever_provisions_reads_nothing(self) -> None:
        for user in User.objects.filter(pk__in=self._admins()):
            assert not policy.readable_rooms(user).exists(), user.username

    @invariant()
    def every_room_was_told_its_state(self) -> None:
        for name, room in self.rooms.items():
            assert self.published[room] == self._state(name).state.value, name


def test_the_safeguarding_invariants_hold_on_every_path() -> None:
    """A short run in the quick SQLite suite; a longer one in CI's PostgreSQL run."""
    examples = 30 if connection.vendor == "postgresql" else 6
    run_state_machine_as_test(
        RosterMachine,
        settings=hypothesis.settings(
            max_examples=examples, stateful_step_count=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        ),
    )
