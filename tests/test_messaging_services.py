"""Messaging services without a socket: send, resend, screen, edit, remove, sync, history, read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django_scopes import scopes_disabled

from audit.models import AuditEvent
from messaging import services
from messaging.models import Message, Room
from messaging.services import MessagingError, Verdict
from tests.conftest import SchoolPeople
from tests.test_policy import NOON, class_room, open_room

pytestmark = pytest.mark.django_db


def send(people: SchoolPeople, who: str = "student", body: str = "hello", **kwargs: Any) -> services.Sent:
    room = kwargs.pop("room", None) or class_room(people)
    return services.send_message(
        user=getattr(people, who), room_id=room.pk, client_id=kwargs.pop("client_id", uuid.uuid4()), body=body,
        now=kwargs.pop("now", NOON),
    )  # fmt: skip


@pytest.fixture
def room(school_a: SchoolPeople) -> Room:
    return open_room(class_room(school_a))


def hold_everything(body: str, room: Room, author: Any) -> Verdict:
    return Verdict("hold", "needs a look", {"categories": ["test"]})


def reject_everything(body: str, room: Room, author: Any) -> Verdict:
    return Verdict("reject", "That cannot be posted here.")


class TestSend:
    def test_messages_are_numbered_and_audited(self, school_a: SchoolPeople, room: Room) -> None:
        first = send(school_a, body="  Hello,\n class  ")
        second = send(school_a, "teacher", "Good morning")
        assert (first.message.seq, second.message.seq) == (1, 2)
        assert first.message.body == "  Hello,\n class  "  # exactly as sent
        with scopes_disabled():
            room.refresh_from_db()
            assert room.last_seq == 2
            event = AuditEvent.objects.get(action="message.sent", target_id=str(first.message.pk))
        assert event.payload["body"] == "  Hello,\n class  "
        assert event.actor_id == school_a.student.pk

    def test_a_resend_returns_the_original(self, school_a: SchoolPeople, room: Room) -> None:
        client_id = uuid.uuid4()
        first = send(school_a, client_id=client_id)
        again = send(school_a, client_id=client_id, body="hello (retry)")
        assert again.created is False
        assert again.message.pk == first.message.pk
        with scopes_disabled():
            assert Message.objects.count() == 1
            assert AuditEvent.objects.filter(action="message.sent").count() == 1

    def test_a_client_id_belongs_to_one_room(self, school_a: SchoolPeople, room: Room) -> None:
        client_id = uuid.uuid4()
        send(school_a, client_id=client_id)
        with scopes_disabled():
            cohort_room = Room.objects.select_related("school").get(cohort=school_a.cohort)
        with pytest.raises(MessagingError) as caught:
            send(school_a, client_id=client_id, room=cohort_room)
        assert caught.value.code == "client_id_reused"

    @pytest.mark.parametrize(
        ("body", "code"),
        [("", "empty_body"), ("   ", "empty_body"), ("x" * 4001, "body_too_long"), (42, "invalid_body"), ("a\x00b", "invalid_body")],
    )  # fmt: skip
    def test_bad_bodies(self, school_a: SchoolPeople, room: Room, body: Any, code: str) -> None:
        with pytest.raises(MessagingError) as caught:
            send(school_a, body=body)
        assert caught.value.code == code

    def test_4000_characters_fit(self, school_a: SchoolPeople, room: Room) -> None:
        assert send(school_a, body="é" * 4000).message.body == "é" * 4000

    def test_a_bad_client_id(self, school_a: SchoolPeople, room: Room) -> None:
        with pytest.raises(MessagingError) as caught:
            send(school_a, client_id="not-a-uuid")
        assert caught.value.code == "invalid_client_id"

    def test_another_schools_room_is_no_room(self, school_a: SchoolPeople, school_b: SchoolPeople, room: Room) -> None:
        other = open_room(class_room(school_b))
        with pytest.raises(MessagingError) as caught:
            send(school_a, room=other)
        assert caught.value.code == "room_not_found"

    def test_a_closed_room_refuses(self, school_a: SchoolPeople) -> None:
        with pytest.raises(MessagingError) as caught:
            send(school_a)
        assert caught.value.code == "room_closed"
        with scopes_disabled():
            assert not Message.objects.exists()

    def test_published_after_commit_only(
        self, school_a: SchoolPeople, room: Room, django_capture_on_commit_callbacks: Any
    ) -> None:
        heard: list[tuple[int, dict[str, Any]]] = []

        def listener(target: Room, event: dict[str, Any]) -> None:
            heard.append((target.pk, event))

        services.subscribe(listener)
        try:
            with django_capture_on_commit_callbacks(execute=False) as callbacks:
                sent = send(school_a)
            assert heard == []  # not before the commit
            for callback in callbacks:
                callback()
        finally:
            services._publishers.remove(listener)
        assert heard == [(room.pk, {"type": "message", "message": services.serialize(sent.message)})]


class TestScreening:
    def test_a_held_message_is_for_its_author_and_moderators(
        self, school_a: SchoolPeople, room: Room, settings: Any
    ) -> None:
        settings.COMMONROOM_SCREENERS = ["tests.test_messaging_services.hold_everything"]
        held = send(school_a).message
        assert held.state == Message.State.HELD
        for who, sees in [("student", True), ("teacher", True), ("aide", False), ("moderator", True)]:
            user = getattr(school_a, who)
            _, look = services.look_at_room(user=user, room_id=room.pk, reason="case", reason_text="", now=NOON)
            assert (look is not None) == (who == "moderator")  # the only one reading from outside the room
            page = services.sync(user=user, room_id=room.pk, after=0, now=NOON, look=look)
            assert [m["id"] for m in page.messages] == ([held.pk] if sees else []), who

    def test_a_rejected_message_is_not_posted(self, school_a: SchoolPeople, room: Room, settings: Any) -> None:
        settings.COMMONROOM_SCREENERS = ["tests.test_messaging_services.reject_everything"]
        with pytest.raises(MessagingError) as caught:
            send(school_a)
        assert (caught.value.code, caught.value.detail) == ("rejected", "That cannot be posted here.")
        with scopes_disabled():
            assert not Message.objects.exists()


class TestEditAndRemove:
    def test_an_author_edits_within_the_window(self, school_a: SchoolPeople, room: Room) -> None:
        message = send(school_a, body="helo").message
        edited = services.edit_message(
            user=school_a.student, message_id=message.pk, body="hello", now=NOON + timedelta(minutes=5)
        )
        assert (edited.body, edited.edited) == ("hello", NOON + timedelta(minutes=5))
        with scopes_disabled():
            event = AuditEvent.objects.get(action="message.edited")
        assert (event.payload["old_body"], event.payload["body"]) == ("helo", "hello")
        with pytest.raises(MessagingError) as caught:
            services.edit_message(
                user=school_a.student, message_id=message.pk, body="late", now=NOON + timedelta(minutes=16)
            )
        assert caught.value.code == "edit_window_over"

    def test_nobody_edits_anothers_message(self, school_a: SchoolPeople, room: Room) -> None:
        message = send(school_a).message
        with pytest.raises(MessagingError) as caught:
            services.edit_message(user=school_a.teacher, message_id=message.pk, body="changed", now=NOON)
        assert caught.value.code == "not_allowed"

    def test_removal_hides_the_text_from_the_room_not_the_log(self, school_a: SchoolPeople, room: Room) -> None:
        message = send(school_a, body="something unkind").message
        with pytest.raises(MessagingError) as caught:
            services.remove_message(user=school_a.teacher, message_id=message.pk, now=NOON)
        assert caught.value.code == "reason_required"
        services.remove_message(user=school_a.teacher, message_id=message.pk, reason="Unkind", now=NOON)
        page = services.sync(user=school_a.aide, room_id=room.pk, after=0, now=NOON)
        assert page.messages[0]["state"] == "removed"
        assert page.messages[0]["body"] == ""
        assert page.messages[0]["removed_reason"] == "Unkind"
        with scopes_disabled():
            event = AuditEvent.objects.get(action="message.removed")
        assert (event.payload["body"], event.actor_id) == ("something unkind", school_a.teacher.pk)

    def test_a_student_deletes_their_own_but_not_anothers(self, school_a: SchoolPeople, room: Room) -> None:
        teachers = send(school_a, "teacher").message
        with pytest.raises(MessagingError) as caught:
            services.remove_message(user=school_a.student, message_id=teachers.pk, reason="no", now=NOON)
        assert caught.value.code == "not_allowed"
        own = send(school_a).message
        services.remove_message(user=school_a.student, message_id=own.pk, now=NOON + timedelta(minutes=1))
        with scopes_disabled():
            assert AuditEvent.objects.filter(action="message.deleted").count() == 1

    def test_a_message_of_another_room_is_no_message(
        self, school_a: SchoolPeople, school_b: SchoolPeople, room: Room
    ) -> None:
        other_room = open_room(class_room(school_b))
        theirs = services.send_message(
            user=school_b.student, room_id=other_room.pk, client_id=uuid.uuid4(), body="hi", now=NOON
        ).message
        with pytest.raises(MessagingError) as caught:
            services.edit_message(user=school_a.student, message_id=theirs.pk, body="x", now=NOON)
        assert caught.value.code == "message_not_found"
        with pytest.raises(MessagingError) as caught:
            services.remove_message(user=school_a.teacher, message_id=theirs.pk, reason="x", now=NOON)
        assert caught.value.code == "message_not_found"


class TestPagesAndReading:
    def test_sync_and_history_page_in_order(self, school_a: SchoolPeople, room: Room) -> None:
        for n in range(7):
            send(school_a, body=f"m{n}")
        page = services.sync(user=school_a.teacher, room_id=room.pk, after=2, now=NOON, limit=3)
        assert ([m["seq"] for m in page.messages], page.more) == ([3, 4, 5], True)
        page = services.sync(user=school_a.teacher, room_id=room.pk, after=5, now=NOON, limit=3)
        assert ([m["seq"] for m in page.messages], page.more) == ([6, 7], False)
        page = services.history(user=school_a.teacher, room_id=room.pk, before=7, now=NOON, limit=4)
        assert ([m["seq"] for m in page.messages], page.more) == ([3, 4, 5, 6], True)

    @pytest.mark.parametrize("after", [-1, "3", 1.5, True, 2**60])
    def test_bad_positions(self, school_a: SchoolPeople, room: Room, after: Any) -> None:
        with pytest.raises(MessagingError) as caught:
            services.sync(user=school_a.student, room_id=room.pk, after=after, now=NOON)
        assert caught.value.code == "invalid_seq"

    def test_read_positions_and_unread_counts(self, school_a: SchoolPeople, room: Room) -> None:
        for _ in range(3):
            send(school_a, "teacher")
        send(school_a)  # their own message is never unread to them
        assert services.unread(school_a.student, room) == 3
        assert services.mark_read(user=school_a.student, room_id=room.pk, up_to=2, now=NOON) == 2
        assert services.unread(school_a.student, room) == 1
        assert services.mark_read(user=school_a.student, room_id=room.pk, up_to=1, now=NOON) == 2  # never back
        assert services.mark_read(user=school_a.student, room_id=room.pk, up_to=99, now=NOON) == 4  # not past the end
        assert services.unread(school_a.student, room) == 0


def test_now_is_used(school_a: SchoolPeople, room: Room) -> None:
    when = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
    assert send(school_a, now=when).message.created == when


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_resend_racing_the_original_makes_one_message() -> None:
    import threading

    from django.db import connections

    from tests.conftest import make_school

    people = make_school("Race School", "r")
    room = open_room(class_room(people))
    client_id = uuid.uuid4()
    barrier = threading.Barrier(4)
    results: list[Any] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(
                services.send_message(user=people.student, room_id=room.pk, client_id=client_id, body="hi", now=NOON)
            )
        except Exception as exc:  # noqa: BLE001  (collected and asserted on below)
            results.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(r, services.Sent) for r in results), results
    assert len({r.message.pk for r in results}) == 1
    assert sum(r.created for r in results) == 1
    with scopes_disabled():
        assert Message.objects.filter(client_id=client_id).count() == 1


class TestTeacherControls:
    def test_a_teacher_opens_and_closes_the_room(self, school_a: SchoolPeople) -> None:
        room = class_room(school_a)
        services.set_room_open(user=school_a.teacher, room_id=room.pk, opened=True, now=NOON)
        assert send(school_a).created
        services.set_room_open(user=school_a.teacher, room_id=room.pk, opened=False, now=NOON)
        with pytest.raises(MessagingError) as caught:
            send(school_a)
        assert caught.value.code == "room_closed"
        with scopes_disabled():
            actions = list(AuditEvent.objects.filter(actor=school_a.teacher).values_list("action", flat=True))
        assert actions == ["room.opened", "room.closed"]

    @pytest.mark.parametrize(
        ("who", "code"),
        [("student", "not_allowed"), ("aide", "not_allowed"),
         ("other_teacher", "room_not_found"), ("admin", "room_not_found")],
    )  # fmt: skip
    def test_only_the_rooms_teachers_moderators_and_safeguarding_lead_control_it(
        self, school_a: SchoolPeople, who: str, code: str
    ) -> None:
        room = class_room(school_a)
        with pytest.raises(MessagingError) as caught:
            services.lock_room(user=getattr(school_a, who), room_id=room.pk, reason="x", now=NOON)
        assert caught.value.code == code
        with scopes_disabled():
            room.refresh_from_db()
        assert room.locked_reason == ""

    @pytest.mark.parametrize("who", ["teacher", "moderator", "safeguarding_lead"])
    def test_the_rooms_staff_with_moderation_can_lock_it(self, school_a: SchoolPeople, who: str) -> None:
        room = class_room(school_a)
        services.lock_room(user=getattr(school_a, who), room_id=room.pk, reason="Under review", now=NOON)
        with scopes_disabled():
            room.refresh_from_db()
        assert room.locked_reason == "Under review"

    def test_locking_shows_the_reason_and_unlocking_clears_it(self, school_a: SchoolPeople, room: Room) -> None:
        services.lock_room(user=school_a.teacher, room_id=room.pk, reason="Exam in progress", now=NOON)
        with pytest.raises(MessagingError) as caught:
            send(school_a)
        assert (caught.value.code, caught.value.detail) == ("room_locked", "Exam in progress")
        services.unlock_room(user=school_a.moderator, room_id=room.pk, now=NOON)
        assert send(school_a).created

    def test_muting_a_student_with_a_reason(self, school_a: SchoolPeople, room: Room) -> None:
        with pytest.raises(MessagingError) as caught:
            services.mute(user=school_a.teacher, room_id=room.pk, student_id=school_a.student.pk, reason=" ", now=NOON)
        assert caught.value.code == "reason_required"
        with pytest.raises(MessagingError) as caught:  # an adult is not muted like a student
            services.mute(user=school_a.teacher, room_id=room.pk, student_id=school_a.aide.pk, reason="x", now=NOON)
        assert caught.value.code == "student_not_found"
        services.mute(
            user=school_a.teacher, room_id=room.pk, student_id=school_a.student.pk, reason="Spamming", now=NOON
        )
        with pytest.raises(MessagingError) as caught:
            send(school_a)
        assert caught.value.detail == "A teacher has muted you in this room: Spamming"
        services.unmute(user=school_a.teacher, room_id=room.pk, student_id=school_a.student.pk, now=NOON)
        assert send(school_a).created
        with scopes_disabled():
            actions = set(AuditEvent.objects.filter(actor=school_a.teacher).values_list("action", flat=True))
        assert {"student.muted", "student.unmuted"} <= actions


def test_accepting_the_policy_is_recorded(school_a: SchoolPeople, room: Room) -> None:
    from messaging.models import AcceptableUsePolicy

    with scopes_disabled():
        AcceptableUsePolicy.objects.create(school=school_a.school, version=1, text="Be kind.", published=NOON)
        AcceptableUsePolicy.objects.create(school=school_a.school, version=2, text="Be kind, always.", published=NOON)
    with pytest.raises(MessagingError) as caught:
        services.accept_policy(user=school_a.student, version=1, now=NOON)
    assert caught.value.code == "policy_changed"
    services.accept_policy(user=school_a.student, version=2, now=NOON)
    services.accept_policy(user=school_a.student, version=2, now=NOON)
    assert send(school_a).created
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="policy.accepted", actor=school_a.student).count() == 1


def test_an_edit_is_screened_and_obeys_the_room(school_a: SchoolPeople, room: Room, settings: Any) -> None:
    message = send(school_a, body="nice words").message
    settings.COMMONROOM_SCREENERS = ["tests.test_messaging_services.reject_everything"]
    with pytest.raises(MessagingError) as caught:
        services.edit_message(user=school_a.student, message_id=message.pk, body="unkind words", now=NOON)
    assert caught.value.code == "rejected"
    settings.COMMONROOM_SCREENERS = []
    services.lock_room(user=school_a.teacher, room_id=room.pk, reason="Calm down", now=NOON)
    with pytest.raises(MessagingError) as caught:
        services.edit_message(user=school_a.student, message_id=message.pk, body="still unkind", now=NOON)
    assert caught.value.code == "room_locked"
    with scopes_disabled():
        message.refresh_from_db()
    assert message.body == "nice words"


def test_deleting_after_the_window_says_so(school_a: SchoolPeople, room: Room) -> None:
    message = send(school_a).message
    with pytest.raises(MessagingError) as caught:
        services.remove_message(user=school_a.student, message_id=message.pk, now=NOON + timedelta(minutes=16))
    assert caught.value.code == "edit_window_over"


def test_the_safeguarding_leads_reading_is_recorded(school_a: SchoolPeople, room: Room) -> None:
    send(school_a, body="one")
    send(school_a, body="two")
    services.sync(user=school_a.teacher, room_id=room.pk, after=0, now=NOON)  # a member: nothing recorded
    lead = school_a.safeguarding_lead
    with pytest.raises(MessagingError) as refused:  # not a member: a reason first (tests/test_reading_on_record.py)
        services.sync(user=lead, room_id=room.pk, after=0, now=NOON)
    assert refused.value.code == "reason_required"
    _, look = services.look_at_room(user=lead, room_id=room.pk, reason="concern", reason_text="", now=NOON)
    assert look is not None
    services.sync(user=lead, room_id=room.pk, after=0, now=NOON, look=look)
    with scopes_disabled():
        events = list(AuditEvent.objects.filter(action="messages.read"))
    assert len(events) == 1
    assert events[0].actor_id == school_a.safeguarding_lead.pk
    assert events[0].payload == {"room": room.pk, "from_seq": 1, "to_seq": 2, "count": 2, "look": look.access}


class TestReport:
    def test_a_report_is_recorded_and_handed_on(self, school_a: SchoolPeople, room: Room) -> None:
        from messaging.signals import message_reported

        heard: list[dict[str, Any]] = []

        def listener(sender: Any, **kwargs: Any) -> None:
            heard.append(kwargs)

        message_reported.connect(listener)
        try:
            sent = send(school_a, "teacher", "Read pages 12 to 14 for tomorrow")
            services.report_message(
                user=school_a.student, message_id=sent.message.pk, category="inappropriate", note="  why?  "
            )
        finally:
            message_reported.disconnect(listener)
        assert [(h["reporter"], h["category"], h["note"], h["message"].pk) for h in heard] == [
            (school_a.student, "inappropriate", "why?", sent.message.pk)
        ]
        with scopes_disabled():
            event = AuditEvent.objects.get(action="message.reported")
        assert event.actor == school_a.student
        assert event.payload == {"room": room.pk, "seq": 1, "category": "inappropriate", "note": "why?"}

    @pytest.mark.parametrize(
        ("category", "note", "code"),
        [("nope", "", "invalid_category"), (None, "", "invalid_category"), ("other", 5, "invalid_note"),
         ("other", "x" * 1001, "invalid_note")],
    )  # fmt: skip
    def test_bad_reports(self, school_a: SchoolPeople, room: Room, category: Any, note: Any, code: str) -> None:
        sent = send(school_a, "teacher")
        with pytest.raises(MessagingError) as refused:
            services.report_message(user=school_a.student, message_id=sent.message.pk, category=category, note=note)
        assert refused.value.code == code

    def test_nobody_reports_what_they_cannot_see_or_their_own(
        self, school_a: SchoolPeople, school_b: SchoolPeople, room: Room
    ) -> None:
        sent = send(school_a, "teacher")
        for outsider in (school_a.other_student, school_b.student):
            with pytest.raises(MessagingError) as refused:
                services.report_message(user=outsider, message_id=sent.message.pk, category="other", note="")
            assert refused.value.code == "message_not_found"
        with pytest.raises(MessagingError) as refused:
            services.report_message(user=school_a.teacher, message_id=sent.message.pk, category="other", note="")
        assert refused.value.code == "own_message"
        with scopes_disabled():
            assert not AuditEvent.objects.filter(action="message.reported").exists()


def test_unlocking_and_unmuting_keep_their_reasons(school_a: SchoolPeople, room: Room) -> None:
    services.lock_room(user=school_a.teacher, room_id=room.pk, reason="Settle down")
    services.unlock_room(user=school_a.teacher, room_id=room.pk, reason="Thanks, all")
    services.mute(user=school_a.teacher, room_id=room.pk, student_id=school_a.student.pk, reason="Break")
    services.unmute(user=school_a.teacher, room_id=room.pk, student_id=school_a.student.pk, reason="Sorted")
    with scopes_disabled():
        assert AuditEvent.objects.get(action="room.unlocked").payload["reason"] == "Thanks, all"
        assert AuditEvent.objects.get(action="student.unmuted").payload["reason"] == "Sorted"
    with pytest.raises(MessagingError) as refused:
        services.unlock_room(user=school_a.teacher, room_id=room.pk, reason="x" * 501)
    assert refused.value.code == "reason_too_long"


def test_the_people_of_a_room(school_a: SchoolPeople, room: Room) -> None:
    services.mute(user=school_a.teacher, room_id=room.pk, student_id=school_a.student.pk, reason="Break")
    _, seen_by_teacher = services.room_people(school_a.teacher, room.pk)
    assert [(p["id"], p["adult"], p["muted"]) for p in seen_by_teacher] == [
        (school_a.aide.pk, True, None),
        (school_a.teacher.pk, True, None),
        (school_a.student.pk, False, "Break"),
    ]
    _, seen_by_student = services.room_people(school_a.student, room.pk)
    assert all(p["muted"] is None for p in seen_by_student)  # a mute's reason is not for classmates
    with pytest.raises(MessagingError):
        services.room_people(school_a.other_student, room.pk)


def test_what_stands_in_the_way_besides_the_room(school_a: SchoolPeople, room: Room) -> None:
    services.publish_policy(actor=None, school_id=school_a.school.pk, text="Be kind.")
    room = services.lock_room(user=school_a.teacher, room_id=room.pk, reason="Exam")
    summary = services.room_summary(school_a.student, room)
    assert summary["refusal"]["code"] == "room_locked"
    assert summary["personal"]["code"] == "policy_not_accepted"  # an unlock alone will not let them post
    services.accept_policy(user=school_a.student, version=1)
    assert services.room_summary(school_a.student, room)["personal"] is None
    assert services.room_summary(school_a.moderator, room)["personal"] == {
        "code": "not_a_member",
        "detail": "You can read this room but not post in it.",
    }


def test_the_room_list_costs_a_bounded_number_of_queries_per_room(school_a: SchoolPeople) -> None:
    """The home page and every `ready` list the rooms: their cost grows with the rooms, by a fixed amount each."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from classes.models import Enrollment, SchoolClass
    from messaging.rooms import sync_rooms

    def cost() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as queries:
            listed = services.room_summaries(school_a.student)
        return len(listed), len(queries)

    rooms_before, queries_before = cost()
    with scopes_disabled():
        for n in range(4):
            extra = SchoolClass.objects.create(school=school_a.school, title=f"Extra {n}", code=f"X{n}")
            extra.terms.add(school_a.year)
            for user, role in [(school_a.student, "student"), (school_a.teacher, "teacher")]:
                Enrollment.objects.create(school=school_a.school, school_class=extra, user=user, role=role)
        with transaction.atomic():
            sync_rooms([school_a.school.pk])
    rooms_after, queries_after = cost()
    assert rooms_after == rooms_before + 4
    assert (queries_after - queries_before) / 4 <= 10


def test_a_removal_reason_too_long_is_refused_not_cut(school_a: SchoolPeople, room: Room) -> None:
    sent = send(school_a)
    with pytest.raises(MessagingError) as refused:
        services.remove_message(user=school_a.teacher, message_id=sent.message.pk, reason="x" * 501)
    assert refused.value.code == "reason_required"
    removed = services.remove_message(user=school_a.teacher, message_id=sent.message.pk, reason="x" * 500)
    assert removed.removed_reason == "x" * 500
