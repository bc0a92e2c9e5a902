"""Cases: opened by flags and reports, routed by level (never to the person they are about), handled,
escalated on a clock, and the actions taken from them."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import time_machine
from django.contrib.auth.hashers import get_hasher
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_scopes import scopes_disabled

from audit.models import AuditEvent
from classes.models import Cohort, CohortStaff, StaffRole, User
from messaging import services
from messaging.models import Message, Mute, Room
from messaging.services import MessagingError
from moderation import access, cases
from moderation.cases import CaseAction, CaseError, escalate_overdue
from moderation.models import Case, ModerationSettings, Report, ScreeningRule, Suspension
from moderation.rules import screen_for
from tests.conftest import SchoolPeople, make_school

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def people(db: Any) -> SchoolPeople:
    school = make_school("Case School", "c", open_class_rooms=True)
    with scopes_disabled():
        for user, address in [(school.safeguarding_lead, "dsl@school.test"), (school.moderator, "mod@school.test")]:
            User.objects.filter(pk=user.pk).update(email=address)
        ModerationSettings.objects.create(
            school=school.school, escalation_contacts="head@school.test\ndeputy@school.test"
        )
    return school


@pytest.fixture
def other(db: Any) -> SchoolPeople:
    return make_school("Other Case School", "d", open_class_rooms=True)


def class_room(people: SchoolPeople) -> Room:
    with scopes_disabled():
        return Room.objects.get(school_class=people.school_class)


def post(user: User, room: Room, body: str, now: datetime = NOON) -> Message:
    return services.send_message(user=user, room_id=room.pk, client_id=uuid.uuid4(), body=body, now=now).message


def only_case(message: Message) -> Case:
    with scopes_disabled():
        return Case.objects.get(message=message)


def sees(user: User, case: Case) -> bool:
    return access.visible_cases(user).filter(pk=case.pk).exists()


def history(case: Case) -> list[str]:
    with scopes_disabled():
        return list(
            AuditEvent.objects.filter(target_type="moderation.case", target_id=str(case.pk))
            .order_by("seq")
            .values_list("action", flat=True)
        )


def hashing_of(client: Client, username: str, password: str) -> int:
    """How many times signing in as `username` with a wrong password runs the password hasher."""
    hasher = type(get_hasher())
    calls = 0
    encode, verify = hasher.encode, hasher.verify

    def counted(method: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return method(*args, **kwargs)

        return run

    with mock.patch.object(hasher, "encode", counted(encode)), mock.patch.object(hasher, "verify", counted(verify)):
        client.post("/login/", {"username": username, "password": password})
    return calls


PERSONAS = ("student", "other_student", "teacher", "other_teacher", "aide", "moderator", "safeguarding_lead", "admin")


class TestOpening:
    def test_a_flagged_message_opens_a_case_for_the_rooms_teachers(self, people: SchoolPeople) -> None:
        message = post(people.student, class_room(people), "nobody likes you")
        case = only_case(message)
        assert (case.level, case.severity, case.state, case.categories) == (1, 2, "open", ["bullying"])
        assert case.subject_id == people.student.pk
        assert not case.staff_conduct
        with scopes_disabled():
            report = Report.objects.get(case=case)
        assert report.reporter is None
        assert report.category == "flag"
        assert history(case) == ["case.opened"]

    def test_an_ordinary_message_opens_nothing(self, people: SchoolPeople) -> None:
        post(people.student, class_room(people), "Can you help me with question 3?")
        with scopes_disabled():
            assert not Case.objects.exists()

    def test_self_harm_starts_at_the_safeguarding_lead_and_emails_them(
        self, people: SchoolPeople, django_capture_on_commit_callbacks: Any
    ) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            message = post(people.student, class_room(people), "I want to die")
        case = only_case(message)
        assert (case.level, case.severity) == (3, 4)
        assert access.alerted(case) == {people.safeguarding_lead.pk}
        cases.wait_for_email()
        assert [m.to for m in mail.outbox] == [["dsl@school.test"]]
        assert "I want to die" not in mail.outbox[0].body  # email leaves the school: no message text
        assert f"/cases/{case.pk}/" in mail.outbox[0].body

    def test_a_held_message_opens_a_case_too(self, people: SchoolPeople) -> None:
        message = post(people.student, class_room(people), "add me on snap")
        assert message.state == Message.State.HELD
        assert only_case(message).level == 2  # severity 3

    def test_reports_join_the_open_case_and_a_graver_one_raises_its_level(self, people: SchoolPeople) -> None:
        room = class_room(people)
        message = post(people.student, room, "see you at lunch")
        services.report_message(user=people.aide, message_id=message.pk, category="bullying", note="mean")
        case = only_case(message)
        assert (case.level, case.severity) == (1, 2)
        services.report_message(user=people.teacher, message_id=message.pk, category="harm", note="")
        case.refresh_from_db()
        assert (case.level, case.severity, case.state) == (3, 4, "escalated")
        assert case.categories == ["bullying", "harm"]
        with scopes_disabled():
            assert Report.objects.filter(case=case).count() == 2
        assert history(case) == ["case.opened", "case.reported"]

    def test_a_report_of_harm_on_a_case_already_at_the_top_alerts_and_emails(
        self, people: SchoolPeople, django_capture_on_commit_callbacks: Any
    ) -> None:
        message = post(people.student, class_room(people), "nobody likes you")
        case = only_case(message)
        cases.escalate(user=people.teacher, case_id=case.pk, reason="Needs a moderator")
        cases.escalate(user=people.moderator, case_id=case.pk, reason="Needs the lead")
        cases.wait_for_email()
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            services.report_message(user=people.aide, message_id=message.pk, category="harm", note="")
        case.refresh_from_db()
        assert (case.level, case.severity) == (3, 4)
        cases.wait_for_email()
        assert [m.to for m in mail.outbox] == [["dsl@school.test"]]
        assert "risk of harm" in mail.outbox[0].body

    def test_a_resolved_case_stays_closed_and_a_new_report_opens_another(self, people: SchoolPeople) -> None:
        message = post(people.student, class_room(people), "nobody likes you")
        first = only_case(message)
        cases.resolve(user=people.teacher, case_id=first.pk, outcome="spoken_to", now=NOON)
        services.report_message(user=people.aide, message_id=message.pk, category="other", note="")
        with scopes_disabled():
            assert Case.objects.filter(message=message).count() == 2
            assert Case.objects.get(message=message, state="open").pk != first.pk


class TestWhoSeesACase:
    EXPECTED = {  # level -> the personas who see a case (not about staff) in the class room
        1: {"teacher", "moderator", "safeguarding_lead"},
        2: {"moderator", "safeguarding_lead"},
        3: {"safeguarding_lead"},
    }

    @pytest.mark.parametrize("level", [1, 2, 3])
    def test_each_level_and_those_above_it(self, people: SchoolPeople, other: SchoolPeople, level: int) -> None:
        case = only_case(post(people.student, class_room(people), "nobody likes you"))
        with scopes_disabled():
            Case.objects.filter(pk=case.pk).update(level=level)
        case.refresh_from_db()
        seen = {name for name in PERSONAS if sees(getattr(people, name), case)}
        assert seen == self.EXPECTED[level]
        # The audience (who hears of changes) is exactly who sees it.
        assert access.audience(case) == {getattr(people, name).pk for name in self.EXPECTED[level]}
        for name in PERSONAS:  # nothing crosses schools
            assert not sees(getattr(other, name), case)
            with pytest.raises(access.CaseNotFound):
                access.case_for(getattr(other, name), case.pk)

    def test_a_moderator_of_another_cohort_does_not_see_it(self, people: SchoolPeople) -> None:
        from classes.models import Cohort

        case = only_case(post(people.student, class_room(people), "nobody likes you"))
        with scopes_disabled():
            elsewhere = Cohort.objects.create(school=people.school, graduation_year=2029)
            StaffRole.objects.get(user=people.moderator, role=StaffRole.Role.MODERATOR).cohorts.add(elsewhere)
        assert not sees(people.moderator, case)
        assert people.moderator.pk not in access.audience(case)

    def test_an_unknown_id_and_a_forbidden_one_get_the_same_answer(self, people: SchoolPeople) -> None:
        case = only_case(post(people.student, class_room(people), "nobody likes you"))
        for case_id in (case.pk, case.pk + 1000, "x", None):
            with pytest.raises(cases.CaseNotFound):
                cases.acknowledge(user=people.other_teacher, case_id=case_id)


class TestStaffConduct:
    """Invariant 6: a case about a member of staff never routes to them, nor to level 1."""

    def test_it_starts_at_the_safeguarding_lead_and_never_reaches_its_subject(self, people: SchoolPeople) -> None:
        message = post(people.teacher, class_room(people), "text me on my number")
        case = only_case(message)
        assert case.staff_conduct
        assert case.level == 3
        assert {name for name in PERSONAS if sees(getattr(people, name), case)} == {"safeguarding_lead"}
        assert people.teacher.pk not in access.audience(case) | access.alerted(case)
        with pytest.raises(CaseError) as caught:
            cases.escalate(user=people.safeguarding_lead, case_id=case.pk, reason="x")
        assert caught.value.code == "top_level"

    def test_a_report_about_a_teacher_goes_to_the_named_person_only(self, people: SchoolPeople) -> None:
        with scopes_disabled():
            ModerationSettings.objects.filter(school=people.school).update(allegations_contact=people.moderator)
        message = post(people.teacher, class_room(people), "Homework is on page 4")
        services.report_message(user=people.student, message_id=message.pk, category="inappropriate", note="")
        case = only_case(message)
        assert {name for name in PERSONAS if sees(getattr(people, name), case)} == {"moderator"}
        assert access.alerted(case) == {people.moderator.pk}
        # The person named can act on it: hide the message, lock the room.
        cases.take_action(user=people.moderator, case_id=case.pk, action=CaseAction.HIDE, reason="Under review")
        cases.take_action(user=people.moderator, case_id=case.pk, action=CaseAction.LOCK, reason="Under review")
        with scopes_disabled():
            assert Message.objects.get(pk=message.pk).state == Message.State.REMOVED

    def test_about_the_safeguarding_lead_themselves(
        self, people: SchoolPeople, django_capture_on_commit_callbacks: Any
    ) -> None:
        """The lead posts in a cohort room they staff; the case about them goes to the whole-school
        moderators, who are alerted to it."""
        with scopes_disabled():
            CohortStaff.objects.create(school=people.school, cohort=people.cohort, user=people.safeguarding_lead)
            room = Room.objects.get(cohort=people.cohort)
        with django_capture_on_commit_callbacks(execute=True):
            message = post(people.safeguarding_lead, room, "dm me about it")
        case = only_case(message)
        assert {name for name in PERSONAS if sees(getattr(people, name), case)} == {"moderator"}
        assert access.audience(case) == access.alerted(case) == {people.moderator.pk}
        assert access.may_suspend(people.moderator, case)
        cases.acknowledge(user=people.moderator, case_id=case.pk)

    def test_with_nobody_else_the_contacts_are_emailed_at_once(
        self, people: SchoolPeople, django_capture_on_commit_callbacks: Any
    ) -> None:
        """The lead is the subject and the only moderator looks after another cohort: nobody in the
        school can be alerted, so the escalation contacts are emailed, once."""
        with scopes_disabled():
            CohortStaff.objects.create(school=people.school, cohort=people.cohort, user=people.safeguarding_lead)
            elsewhere = Cohort.objects.create(school=people.school, graduation_year=2030)
            StaffRole.objects.get(user=people.moderator, role=StaffRole.Role.MODERATOR).cohorts.add(elsewhere)
            room = Room.objects.get(cohort=people.cohort)
        with django_capture_on_commit_callbacks(execute=True):
            message = post(people.safeguarding_lead, room, "dm me about it")
        case = only_case(message)
        assert {name for name in PERSONAS if sees(getattr(people, name), case)} == set()
        assert access.audience(case) == set()
        cases.wait_for_email()
        assert [m.to for m in mail.outbox] == [["head@school.test", "deputy@school.test"]]
        case.refresh_from_db()
        assert case.contacts_emailed is not None
        # The clock does not email them a second time at the deadline.
        assert escalate_overdue(case.level_since + timedelta(hours=1)).emailed == []

    @pytest.mark.parametrize("absent", ["subject", "suspended", "disabled"])
    def test_when_the_named_person_cannot_take_it_the_lead_does(self, people: SchoolPeople, absent: str) -> None:
        """The person named for allegations is the case's subject, suspended or disabled: the case goes
        to the safeguarding lead rather than to nobody."""
        with scopes_disabled():
            ModerationSettings.objects.filter(school=people.school).update(allegations_contact=people.moderator)
            if absent == "suspended":
                User.objects.filter(pk=people.moderator.pk).update(suspended=True)
            elif absent == "disabled":
                User.objects.filter(pk=people.moderator.pk).update(enabled=False)
        author = people.moderator if absent == "subject" else people.teacher
        with scopes_disabled():
            CohortStaff.objects.create(school=people.school, cohort=people.cohort, user=author)
            room = Room.objects.get(cohort=people.cohort)
        if absent == "subject":
            message = post(author, room, "text me on my number")
        else:
            message = post(author, class_room(people), "text me on my number")
        case = only_case(message)
        assert access.audience(case) == access.alerted(case) == {people.safeguarding_lead.pk}
        people.moderator.refresh_from_db()  # `sees` reads whether the account is active
        assert {name for name in PERSONAS if sees(getattr(people, name), case)} == {"safeguarding_lead"}

    def test_the_named_person_keeps_the_cases_about_the_lead(self, people: SchoolPeople) -> None:
        """With a named person, the lead handles (as second in line) only the cases about that person."""
        with scopes_disabled():
            ModerationSettings.objects.filter(school=people.school).update(allegations_contact=people.moderator)
            CohortStaff.objects.create(school=people.school, cohort=people.cohort, user=people.moderator)
            room = Room.objects.get(cohort=people.cohort)
        about_teacher = only_case(post(people.teacher, class_room(people), "text me on my number"))
        about_contact = only_case(post(people.moderator, room, "text me on my number"))
        assert (sees(people.moderator, about_teacher), sees(people.safeguarding_lead, about_teacher)) == (True, False)
        assert (sees(people.safeguarding_lead, about_contact), sees(people.moderator, about_contact)) == (True, False)
        assert not access.may_suspend(people.teacher, about_teacher)


class TestHandling:
    def test_acknowledge_assign_note_and_resolve_are_each_recorded(self, people: SchoolPeople) -> None:
        case = only_case(post(people.student, class_room(people), "nobody likes you"))
        cases.acknowledge(user=people.teacher, case_id=case.pk, now=NOON)
        case.refresh_from_db()
        assert (case.state, case.assignee_id, case.acknowledged) == ("acknowledged", people.teacher.pk, NOON)
        cases.assign(user=people.teacher, case_id=case.pk, assignee_id=people.moderator.pk)
        with pytest.raises(CaseError):  # only to someone who handles it
            cases.assign(user=people.teacher, case_id=case.pk, assignee_id=people.other_teacher.pk)
        cases.add_note(user=people.teacher, case_id=case.pk, text="Spoke to both students.")
        with pytest.raises(CaseError):
            cases.resolve(user=people.teacher, case_id=case.pk, outcome="shrug")
        cases.resolve(user=people.teacher, case_id=case.pk, outcome="spoken_to", note="Sorted", now=NOON)
        case.refresh_from_db()
        assert (case.state, case.outcome, case.resolved) == ("resolved", "spoken_to", NOON)
        assert history(case) == [
            "case.opened",
            "case.acknowledged",
            "case.assigned",
            "case.note_added",
            "case.resolved",
        ]
        with pytest.raises(CaseError) as caught:
            cases.acknowledge(user=people.teacher, case_id=case.pk)
        assert caught.value.code == "case_resolved"

    def test_suspended_or_disabled_staff_are_not_alerted(self, people: SchoolPeople) -> None:
        case = only_case(post(people.student, class_room(people), "I want to die"))
        assert access.alerted(case) == {people.safeguarding_lead.pk}
        User.objects.filter(pk=people.safeguarding_lead.pk).update(suspended=True)
        assert access.alerted(case) == set()
        User.objects.filter(pk=people.safeguarding_lead.pk).update(suspended=False, enabled=False)
        assert access.alerted(case) == set()
        assert not sees(User.objects.get(pk=people.safeguarding_lead.pk), case)

    def test_escalating_by_hand_needs_a_reason_and_moves_it_out_of_the_teachers_sight(
        self, people: SchoolPeople
    ) -> None:
        case = only_case(post(people.student, class_room(people), "nobody likes you"))
        with pytest.raises(MessagingError):
            cases.escalate(user=people.teacher, case_id=case.pk, reason=" ")
        cases.escalate(user=people.teacher, case_id=case.pk, reason="Happening outside school too", now=NOON)
        case.refresh_from_db()
        assert (case.level, case.state, case.level_since) == (2, "escalated", NOON)
        assert not sees(people.teacher, case)
        assert access.alerted(case) == {people.moderator.pk}


class TestClock:
    def test_an_unacknowledged_case_climbs_then_the_contacts_are_emailed_once(
        self, people: SchoolPeople, django_capture_on_commit_callbacks: Any
    ) -> None:
        case = only_case(post(people.student, class_room(people), "nobody likes you", now=NOON))
        assert escalate_overdue(NOON + timedelta(minutes=29)).escalated == []
        assert escalate_overdue(NOON + timedelta(minutes=30)).escalated == [case.pk]
        case.refresh_from_db()
        assert (case.level, case.state) == (2, "escalated")
        later = NOON + timedelta(minutes=30 + 15)
        assert escalate_overdue(later).escalated == [case.pk]
        case.refresh_from_db()
        assert case.level == 3
        with django_capture_on_commit_callbacks(execute=True):
            assert escalate_overdue(later + timedelta(minutes=4)).emailed == []
            assert escalate_overdue(later + timedelta(minutes=5)).emailed == [case.pk]
            assert escalate_overdue(later + timedelta(minutes=60)) == cases.Tick([], [])
        cases.wait_for_email()
        assert [m.to for m in mail.outbox if "acknowledged" in m.body] == [["head@school.test", "deputy@school.test"]]
        with scopes_disabled():
            automatic = AuditEvent.objects.filter(action="case.escalated", target_id=str(case.pk))
            assert [(e.actor_id, e.payload["automatic"]) for e in automatic] == [(None, True), (None, True)]
        assert history(case)[-1] == "case.contacts_emailed"

    @pytest.mark.django_db(transaction=True)  # the mail thread records the failure in its own transaction
    def test_a_failed_email_to_the_contacts_is_recorded_and_sent_again(
        self, people: SchoolPeople, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        tries: list[list[str]] = []

        def mail_server_down_for_three_tries(subject: str, body: str, sender: str, to: list[str]) -> int:
            tries.append(to)
            if len(tries) <= 3:
                raise ConnectionRefusedError("mail server down")
            return 1

        monkeypatch.setattr(cases, "send_mail", mail_server_down_for_three_tries)
        monkeypatch.setattr(cases, "RETRY_SECONDS", (0.0, 0.0))
        message = post(people.student, class_room(people), "nobody likes you")
        case = only_case(message)
        cases.escalate(user=people.teacher, case_id=case.pk, reason="Needs a moderator", now=NOON)
        cases.escalate(user=people.moderator, case_id=case.pk, reason="Needs the lead", now=NOON)
        assert escalate_overdue(NOON + timedelta(hours=1)).emailed == [case.pk]
        cases.wait_for_email()
        case.refresh_from_db()
        assert len(tries) == 3
        assert case.contacts_emailed is None
        assert history(case)[-2:] == ["case.contacts_emailed", "case.email_failed"]
        # The clock's next tick tries again, and this time the mail server answers.
        assert escalate_overdue(NOON + timedelta(hours=1, minutes=1)).emailed == [case.pk]
        cases.wait_for_email()
        case.refresh_from_db()
        assert tries[3:] == [["head@school.test", "deputy@school.test"]]
        assert case.contacts_emailed is not None
        assert escalate_overdue(NOON + timedelta(hours=2)) == cases.Tick([], [])

    def test_an_acknowledged_case_stays_where_it_is(self, people: SchoolPeople) -> None:
        case = only_case(post(people.student, class_room(people), "nobody likes you", now=NOON))
        cases.acknowledge(user=people.teacher, case_id=case.pk, now=NOON + timedelta(minutes=1))
        assert escalate_overdue(NOON + timedelta(hours=5)).escalated == []
        case.refresh_from_db()
        assert case.level == 1

    def test_the_schools_deadlines_apply(self, people: SchoolPeople) -> None:
        with scopes_disabled():
            ModerationSettings.objects.filter(school=people.school).update(level_1_minutes=5)
        case = only_case(post(people.student, class_room(people), "nobody likes you", now=NOON))
        assert escalate_overdue(NOON + timedelta(minutes=5)).escalated == [case.pk]

    def test_the_command_runs_the_clock_now(self, people: SchoolPeople) -> None:
        case = only_case(post(people.student, class_room(people), "nobody likes you", now=NOON))
        out = io.StringIO()
        with time_machine.travel(NOON + timedelta(minutes=31), tick=False):
            call_command("escalate_overdue", stdout=out)
        assert out.getvalue().strip() == "escalated 1 case(s), emailed contacts for 0 case(s)"
        case.refresh_from_db()
        assert case.level == 2


class TestActions:
    def open_case(self, people: SchoolPeople, body: str = "nobody likes you") -> Case:
        return only_case(post(people.student, class_room(people), body))

    def test_hide_and_restore_the_message(self, people: SchoolPeople) -> None:
        case = self.open_case(people)
        cases.take_action(user=people.teacher, case_id=case.pk, action=CaseAction.HIDE, reason="Unkind")
        with scopes_disabled():
            message = Message.objects.select_related("author").get(pk=case.message_id)
        shown = services.serialize(message)
        assert (shown["state"], shown["body"], shown["removed_reason"]) == ("removed", "", "Unkind")
        cases.take_action(user=people.teacher, case_id=case.pk, action=CaseAction.RESTORE)
        message.refresh_from_db()
        assert message.state == Message.State.VISIBLE
        assert history(case) == ["case.opened", "case.action", "case.action"]

    def test_where_the_school_says_so_the_room_sees_a_general_notice(self, people: SchoolPeople) -> None:
        with scopes_disabled():
            ModerationSettings.objects.filter(school=people.school).update(tell_reasons=False)
        case = self.open_case(people)
        cases.take_action(user=people.teacher, case_id=case.pk, action=CaseAction.HIDE, reason="Bullying X")
        with scopes_disabled():
            assert Message.objects.get(pk=case.message_id).removed_reason == "Removed by staff after a review."
            event = AuditEvent.objects.get(action="case.action", target_id=str(case.pk))
        assert event.payload["reason"] == "Bullying X"

    def test_mute_and_lock_and_undo_them(self, people: SchoolPeople) -> None:
        case = self.open_case(people)
        room = class_room(people)
        cases.take_action(user=people.teacher, case_id=case.pk, action=CaseAction.MUTE, reason="Cool off")
        with scopes_disabled():
            assert Mute.objects.get(room=room, user=people.student, ended__isnull=True).reason == "Cool off"
        cases.take_action(user=people.teacher, case_id=case.pk, action=CaseAction.UNMUTE)
        cases.take_action(user=people.teacher, case_id=case.pk, action=CaseAction.LOCK, reason="Calm down")
        room.refresh_from_db()
        assert room.locked_reason == "Calm down"
        cases.take_action(user=people.teacher, case_id=case.pk, action=CaseAction.UNLOCK)
        room.refresh_from_db()
        assert room.locked_reason == ""
        with scopes_disabled():
            assert not Mute.objects.filter(room=room, user=people.student, ended__isnull=True).exists()

    def test_a_reason_is_needed(self, people: SchoolPeople) -> None:
        case = self.open_case(people)
        for action in CaseAction.NEEDS_REASON:
            with pytest.raises(MessagingError) as caught:
                cases.take_action(user=people.teacher, case_id=case.pk, action=action, reason="")
            assert caught.value.code == "reason_required"

    def test_what_was_done_can_be_undone_after_the_case_is_resolved(self, people: SchoolPeople) -> None:
        case = self.open_case(people)
        cases.take_action(user=people.moderator, case_id=case.pk, action=CaseAction.SUSPEND, reason="Threats")
        with pytest.raises(CaseError) as caught:
            cases.take_action(user=people.moderator, case_id=case.pk, action=CaseAction.SUSPEND, reason="Again")
        assert caught.value.code == "already_suspended"
        cases.resolve(user=people.moderator, case_id=case.pk, outcome="action_taken")
        cases.take_action(user=people.moderator, case_id=case.pk, action=CaseAction.UNSUSPEND, reason="Served")
        assert User.objects.get(pk=people.student.pk).is_active

    def test_the_suspension_reason_is_shown_only_where_the_school_allows(self, people: SchoolPeople) -> None:
        case = self.open_case(people)
        cases.take_action(user=people.moderator, case_id=case.pk, action=CaseAction.SUSPEND, reason="Threats")
        student = User.objects.get(pk=people.student.pk)
        assert cases.suspension_notice(student) == "Threats"
        with scopes_disabled():
            ModerationSettings.objects.filter(school=people.school).update(tell_reasons=False)
            assert Suspension.objects.get(user=student).reason == "Threats"  # kept for the staff
        assert cases.suspension_notice(student) == "Suspended by staff after a review."

    def test_approve_a_held_message(self, people: SchoolPeople) -> None:
        case = self.open_case(people, "add me on snap")
        cases.take_action(user=people.moderator, case_id=case.pk, action=CaseAction.APPROVE)
        with scopes_disabled():
            assert Message.objects.get(pk=case.message_id).state == Message.State.VISIBLE

    def test_suspend_and_restore_the_author(self, people: SchoolPeople) -> None:
        case = self.open_case(people)
        with pytest.raises(CaseError) as caught:  # a class teacher alone cannot
            cases.take_action(user=people.teacher, case_id=case.pk, action=CaseAction.SUSPEND, reason="x")
        assert caught.value.code == "not_allowed"
        cases.take_action(user=people.moderator, case_id=case.pk, action=CaseAction.SUSPEND, reason="Threats")
        student = User.objects.get(pk=people.student.pk)
        assert student.suspended
        assert not student.is_active
        client = Client()
        page = client.post("/login/", {"username": student.username, "password": "pw"})
        assert "Your account is suspended: Threats" in page.content.decode()
        page = client.post("/login/", {"username": student.username, "password": "wrong"})
        assert "suspended" not in page.content.decode()  # only the person who knows the password is told
        # A wrong password costs the same hashing whether the account is suspended or not (no timing tell;
        # the first sign-in of a process also makes its decoy hash, once).
        assert hashing_of(client, people.other_student.username, "no") > 0
        assert hashing_of(client, student.username, "wrong") == hashing_of(client, people.other_student.username, "no")
        cases.take_action(user=people.moderator, case_id=case.pk, action=CaseAction.UNSUSPEND, reason="Talked")
        assert User.objects.get(pk=people.student.pk).is_active
        assert client.login(username=student.username, password="pw")
        with scopes_disabled():
            actions = list(
                AuditEvent.objects.filter(target_type="classes.user", target_id=str(people.student.pk))
                .filter(action__startswith="account.")
                .values_list("action", flat=True)
            )
        assert actions == ["account.suspended", "account.restored"]


class TestScreeningRules:
    def test_a_schools_own_phrases_and_actions_apply_to_it_alone(
        self, people: SchoolPeople, other: SchoolPeople
    ) -> None:
        assert screen_for("meet at the bike sheds", people.school.pk).action == "allow"
        with scopes_disabled():
            ScreeningRule.objects.create(
                school=people.school, category="bullying", action="hold", phrases="bike sheds\n\n  ", severity=3
            )
        result = screen_for("meet at the B1KE  SHEDS", people.school.pk)
        assert (result.action, result.severity, result.categories) == ("hold", 3, ("bullying",))
        assert screen_for("meet at the bike sheds", other.school.pk).action == "allow"
        # The built-in phrases still count, with the school's action.
        assert screen_for("nobody likes you", people.school.pk).action == "hold"
        assert screen_for("nobody likes you", other.school.pk).action == "flag"

    def test_self_harm_is_never_rejected_whatever_a_rule_says(self, people: SchoolPeople) -> None:
        with scopes_disabled():
            ScreeningRule.objects.create(school=people.school, category="self_harm", action="reject")
        assert screen_for("I want to die", people.school.pk).action == "hold"

    def test_the_screen_command_uses_the_schools_rules(self, people: SchoolPeople, monkeypatch: Any) -> None:
        with scopes_disabled():
            ScreeningRule.objects.create(school=people.school, category="off_platform", phrases="pigeon post")
        monkeypatch.setattr("sys.stdin", io.StringIO("send it by pigeon post\nhello\n"))
        out = io.StringIO()
        call_command("screen", school=people.school.pk, stdout=out)
        first, second = (json.loads(line) for line in out.getvalue().splitlines())
        assert first["verdict"] == "hold"
        assert first["matches"] == [{"category": "off_platform", "start": 11, "end": 22, "text": "pigeon post"}]
        assert second["verdict"] == "allow"
        with pytest.raises(CommandError):
            call_command("screen", school=999999, stdout=io.StringIO())


class TestPages:
    def client_for(self, user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    def test_the_queue_is_for_staff_with_cases(self, people: SchoolPeople) -> None:
        room = class_room(people)
        post(people.student, room, "nobody likes you")
        post(people.student, room, "I want to die")
        for name in ("student", "admin", "aide"):
            assert self.client_for(getattr(people, name)).get("/cases/").status_code == 404
        page = self.client_for(people.safeguarding_lead).get("/cases/").content.decode()
        rows = page.split("<tbody>")[1]
        # Most severe first.
        assert rows.index("Self-harm or suicide risk") < rows.index("Bullying or harassment")
        teacher_page = self.client_for(people.teacher).get("/cases/").content.decode()
        assert "Bullying or harassment" in teacher_page
        assert "Self-harm" not in teacher_page
        assert 'href="/cases/"' in teacher_page  # the navigation links to it
        assert 'href="/cases/"' not in self.client_for(people.student).get("/profile/").content.decode()

    def test_the_case_page_shows_the_message_in_context_with_every_version(
        self, people: SchoolPeople, other: SchoolPeople
    ) -> None:
        room = class_room(people)
        before = post(people.teacher, room, "Who has finished the essay?")
        message = post(people.student, room, "fine")
        services.edit_message(user=people.student, message_id=message.pk, body="nobody likes you", now=NOON)
        services.remove_message(user=people.student, message_id=message.pk, now=NOON)
        case = only_case(message)
        client = self.client_for(people.teacher)
        page = client.get(f"/cases/{case.pk}/").content.decode()
        assert "Who has finished the essay?" in page  # the context
        assert "fine" in page
        assert "nobody likes you" in page
        assert "Deleted by its author" in page
        with scopes_disabled():
            viewed = AuditEvent.objects.get(action="case.viewed", actor=people.teacher)
        assert before.pk in viewed.payload["messages"]
        assert self.client_for(other.safeguarding_lead).get(f"/cases/{case.pk}/").status_code == 404
        assert self.client_for(people.other_teacher).get(f"/cases/{case.pk}/").status_code == 404
        assert self.client_for(people.teacher).get(f"/cases/{case.pk + 99}/").status_code == 404

    def test_handling_a_case_from_its_page(self, people: SchoolPeople) -> None:
        case = only_case(post(people.student, class_room(people), "nobody likes you"))
        client = self.client_for(people.teacher)
        url = f"/cases/{case.pk}/"
        assert client.post(url, {"step": "acknowledge"}).status_code == 302
        answer = client.post(url, {"step": "act", "action": "hide_message", "reason": ""}, follow=True)
        assert "Give a reason" in answer.content.decode()
        client.post(url, {"step": "act", "action": "hide_message", "reason": "Unkind"})
        answer = client.post(url, {"step": "resolve", "outcome": "action_taken"}, follow=True)
        assert "The case is resolved." in answer.content.decode()
        case.refresh_from_db()
        assert (case.state, case.outcome, case.assignee_id) == ("resolved", "action_taken", people.teacher.pk)
        with scopes_disabled():
            assert Message.objects.get(pk=case.message_id).state == Message.State.REMOVED
        assert self.client_for(people.other_teacher).post(url, {"step": "acknowledge"}).status_code == 404


@pytest.mark.postgres
class TestLockOrder:
    """Every audited action of a school locks the school's audit chain before any other row, so two
    actions can only wait for each other, never deadlock (a report locks its case after recording,
    a case action used to lock the case before recording)."""

    def test_the_chain_is_the_first_lock_of_every_action(self, people: SchoolPeople) -> None:
        room = class_room(people)
        message = post(people.student, room, "nobody likes you", now=timezone.now())
        case = only_case(message)
        actions: dict[str, Any] = {
            "send": lambda: post(people.student, room, "see you at lunch", now=timezone.now()),
            "edit": lambda: services.edit_message(user=people.student, message_id=message.pk, body="nobody likes u"),
            "report": lambda: services.report_message(
                user=people.aide, message_id=message.pk, category="bullying", note=""
            ),
            "acknowledge": lambda: cases.acknowledge(user=people.teacher, case_id=case.pk),
            "note": lambda: cases.add_note(user=people.teacher, case_id=case.pk, text="Spoke to them"),
            "hide": lambda: cases.take_action(
                user=people.teacher, case_id=case.pk, action=CaseAction.HIDE, reason="Unkind"
            ),
            "lock room": lambda: services.lock_room(user=people.teacher, room_id=room.pk, reason="Calm down"),
            "mute": lambda: services.mute(
                user=people.teacher, room_id=room.pk, student_id=people.student.pk, reason="Calm down"
            ),
            "escalate": lambda: cases.escalate(user=people.teacher, case_id=case.pk, reason="Needs a moderator"),
            "clock": lambda: escalate_overdue(timezone.now() + timedelta(days=1)),
            "resolve": lambda: cases.resolve(user=people.safeguarding_lead, case_id=case.pk, outcome="spoken_to"),
        }
        for name, action in actions.items():
            with CaptureQueriesContext(connection) as seen:
                action()
            locking = [
                query["sql"]
                for query in seen.captured_queries
                if "FOR UPDATE" in query["sql"] or query["sql"].lstrip().startswith(("UPDATE", "DELETE"))
            ]
            assert locking, name
            first = locking[0]
            assert first.startswith('SELECT "audit_auditchainhead"'), (name, first)
            assert "FOR UPDATE" in first, (name, first)
