"""Every reading of a child's messages is on the record: a moderator or the safeguarding lead reading a room
they are not a member of (on the socket and on its page), and a platform operator reading the audit log, say
why first, and show in the school's "who looked" for the people whose messages they read."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone
from django_scopes import scopes_disabled

from audit.models import AuditEvent
from classes.models import User
from messaging import services
from messaging.models import Room
from moderation import review
from moderation.models import AccessRecord
from tests.conftest import SchoolPeople, make_school
from tests.test_socket import connect, send_and_ack, until

OUTSIDERS = ("moderator", "safeguarding_lead")  # they read the class room by their role, not as its members


@pytest.fixture
def people(db: Any) -> SchoolPeople:
    return make_school("Record School", "r", open_class_rooms=True)


@pytest.fixture
def other(db: Any) -> SchoolPeople:
    return make_school("Other Record School", "q", open_class_rooms=True)


@pytest.fixture
def room(people: SchoolPeople) -> int:
    with scopes_disabled():
        return Room.objects.get(school_class=people.school_class).pk


def looks_at(people: SchoolPeople, person: User) -> list[AccessRecord]:
    """What the school's "who looked" shows the safeguarding lead for `person`."""
    _, found = review.who_looked(people.safeguarding_lead, review.Reason("audit"), person.pk)
    return [look for look in found if look.kind != "access"]


def count_looks() -> int:
    with scopes_disabled():
        return AccessRecord.objects.count()


def subjects_of(look: AccessRecord) -> set[int]:
    with scopes_disabled():
        return set(look.subjects.values_list("pk", flat=True))


# -- on the socket -------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
class TestOnTheSocket:
    @pytest.mark.parametrize("who", OUTSIDERS)
    async def test_pages_need_a_look_which_is_recorded(self, people: SchoolPeople, room: int, who: str) -> None:
        teacher, _ = await connect(people.teacher)
        for n in range(3):
            await send_and_ack(teacher, room, f"m{n}")
        reader, ready = await connect(getattr(people, who))
        listed = next(r for r in ready["rooms"] if r["id"] == room)
        assert (listed["member"], listed["reason_required"]) == (False, True)

        for frame in ({"type": "history", "room": room, "before": 4}, {"type": "sync", "room": room, "after": 0}):
            await reader.send_json_to(frame)
            refused = await reader.receive_json_from()
            assert (refused["type"], refused["code"]) == ("error", "reason_required")
            assert "say why" in refused["detail"]
        for reason, text, detail in [
            ("made-up", "", "Choose why you are looking."),
            ("other", " ", "Say why you are looking."),
        ]:
            await reader.send_json_to({"type": "look", "room": room, "reason": reason, "reason_text": text})
            assert await reader.receive_json_from() == {"type": "error", "code": "invalid_reason", "detail": detail}
        assert await database_sync_to_async(count_looks)() == 0

        await reader.send_json_to({"type": "look", "room": room, "reason": "case", "reason_text": "case 12"})
        assert await reader.receive_json_from() == {"type": "looking", "room": room}
        await reader.send_json_to({"type": "history", "room": room, "before": 3})
        assert [m["body"] for m in (await until(reader, "history"))["messages"]] == ["m0", "m1"]
        await reader.send_json_to({"type": "sync", "room": room, "after": 2})
        assert [m["body"] for m in (await until(reader, "history"))["messages"]] == ["m2"]

        def recorded() -> tuple[list[AccessRecord], set[int], list[dict[str, Any]]]:
            found = looks_at(people, people.student)
            with scopes_disabled():
                pages = [e.payload for e in AuditEvent.objects.filter(action="messages.read").order_by("seq")]
            return found, subjects_of(found[0]), pages

        found, subjects, pages = await database_sync_to_async(recorded)()
        (look,) = found
        assert (look.reviewer_id, look.kind, look.query, look.reason, look.reason_text) == (
            getattr(people, who).pk,
            "room",
            {"room": room},
            "case",
            "case 12",
        )
        # The room's students when the look began, and then whoever wrote what its pages showed.
        assert subjects == {people.student.pk, people.teacher.pk}
        assert pages == [
            {"room": room, "from_seq": 1, "to_seq": 2, "count": 2, "look": look.pk},
            {"room": room, "from_seq": 3, "to_seq": 3, "count": 1, "look": look.pk},
        ]
        for communicator in (teacher, reader):
            await communicator.disconnect()

    async def test_live_messages_reach_an_outside_reader_only_after_a_look(
        self, people: SchoolPeople, room: int
    ) -> None:
        teacher, _ = await connect(people.teacher)
        moderator, _ = await connect(people.moderator)
        await send_and_ack(teacher, room, "before the look")
        await teacher.send_json_to({"type": "lock", "room": room, "reason": "A quiet minute"})
        state = await moderator.receive_json_from()  # what is not a message still arrives
        assert (state["type"], state["state"]) == ("room_state", "locked")
        await teacher.send_json_to({"type": "unlock", "room": room})
        assert (await moderator.receive_json_from())["state"] == "open"
        assert await moderator.receive_nothing(timeout=0.2)

        await moderator.send_json_to({"type": "look", "room": room, "reason": "concern"})
        assert await moderator.receive_json_from() == {"type": "looking", "room": room}
        await send_and_ack(teacher, room, "after the look")
        heard = await moderator.receive_json_from()
        assert (heard["type"], heard["message"]["body"]) == ("message", "after the look")

        # The look is this socket's: another socket of the same person has to give its own reason.
        second, _ = await connect(people.moderator)
        await send_and_ack(teacher, room, "not for the second socket")
        assert (await moderator.receive_json_from())["message"]["body"] == "not for the second socket"
        assert await second.receive_nothing(timeout=0.2)
        for communicator in (teacher, moderator, second):
            await communicator.disconnect()

    async def test_a_class_teacher_needs_no_reason(self, people: SchoolPeople, room: int) -> None:
        teacher, ready = await connect(people.teacher)
        listed = next(r for r in ready["rooms"] if r["id"] == room)
        assert (listed["member"], listed["reason_required"], listed["moderator"]) == (True, False, True)
        await send_and_ack(teacher, room, "hello")
        await teacher.send_json_to({"type": "history", "room": room, "before": 2})
        assert [m["body"] for m in (await until(teacher, "history"))["messages"]] == ["hello"]
        # A member's look is answered, and records nothing.
        await teacher.send_json_to({"type": "look", "room": room})
        assert await teacher.receive_json_from() == {"type": "looking", "room": room}

        def recorded() -> tuple[int, int]:
            with scopes_disabled():
                return AccessRecord.objects.count(), AuditEvent.objects.filter(action="messages.read").count()

        assert await database_sync_to_async(recorded)() == (0, 0)
        student, ready = await connect(people.student)
        assert next(r for r in ready["rooms"] if r["id"] == room)["reason_required"] is False
        for communicator in (teacher, student):
            await communicator.disconnect()

    async def test_a_look_at_a_room_one_cannot_read_is_no_room(
        self, people: SchoolPeople, other: SchoolPeople, room: int
    ) -> None:
        outsider, _ = await connect(other.safeguarding_lead)
        answers = []
        for room_id in (room, 999_999):
            await outsider.send_json_to({"type": "look", "room": room_id, "reason": "concern"})
            answers.append(await outsider.receive_json_from())
        assert (
            answers[0] == answers[1] == {"type": "error", "code": "room_not_found", "detail": "There is no such room."}
        )
        await outsider.disconnect()


# -- the room's page -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", OUTSIDERS)
def test_the_room_page_asks_why_then_records_each_showing(people: SchoolPeople, room: int, who: str) -> None:
    reader = getattr(people, who)
    client = Client()
    client.force_login(reader)
    page = client.get(f"/rooms/{room}/").content.decode()
    assert f"Why are you reading {people.school_class.title}?" in page
    assert "A safeguarding concern about a child" in page  # the review pages' reasons, in their words
    assert people.student.full_name not in page  # nothing of the room before the reason
    asked = client.post(f"/rooms/{room}/", {"reason": "other", "text": ""}).content.decode()
    assert "Say why you are looking." in asked
    with scopes_disabled():
        assert not AccessRecord.objects.exists()

    answer = client.post(f"/rooms/{room}/", {"reason": "other", "text": "A parent called"})
    assert (answer.status_code, answer["Location"]) == (302, f"/rooms/{room}/")
    for _ in range(2):
        page = client.get(f"/rooms/{room}/").content.decode()
        assert people.student.full_name in page
        assert 'data-reason-required="true" data-look-reason="other" data-look-text="A parent called"' in page
    found = looks_at(people, people.student)
    assert [(look.reviewer_id, look.kind, look.reason_text) for look in found] == [
        (reader.pk, "room page", "A parent called")
    ] * 2
    assert subjects_of(found[0]) == {people.student.pk}

    # Half an hour later the reason is asked again.
    with time_machine.travel(timezone.now() + timedelta(minutes=31)):
        assert "Why are you reading" in client.get(f"/rooms/{room}/").content.decode()


def test_a_member_opens_the_room_page_without_a_reason(people: SchoolPeople, room: int) -> None:
    for member in (people.teacher, people.student):
        client = Client()
        client.force_login(member)
        page = client.get(f"/rooms/{room}/").content.decode()
        assert 'data-reason-required="false"' in page
        assert f"Why are you reading {people.school_class.title}?" not in page
        assert client.post(f"/rooms/{room}/", {"reason": "case"})["Location"] == f"/rooms/{room}/"
    with scopes_disabled():
        assert not AccessRecord.objects.exists()


# -- the audit log in the operator's admin --------------------------------------------------------------------


def test_the_operator_gives_a_reason_and_shows_in_each_schools_who_looked(
    people: SchoolPeople, other: SchoolPeople, room: int, operator: User
) -> None:
    with scopes_disabled():
        other_room = Room.objects.get(school_class=other.school_class).pk
    sent = services.send_message(user=people.student, room_id=room, client_id=uuid.uuid4(), body="lunch?").message
    services.send_message(user=other.student, room_id=other_room, client_id=uuid.uuid4(), body="theirs")
    services.remove_message(user=people.teacher, message_id=sent.pk, reason="Unkind")
    client = Client()
    client.force_login(operator)

    listing = "/admin/audit/auditevent/?action__exact=message.removed"
    asked = client.get(listing)
    assert asked.status_code == 302
    assert asked["Location"].startswith("/admin/audit/auditevent/reason/?next=")
    form = client.get(asked["Location"]).content.decode()
    assert "A safeguarding concern about a child" in form
    assert "30 minutes" in form
    assert (
        "Say why you are looking." in client.post(asked["Location"], {"reason": "other", "text": ""}).content.decode()
    )
    with scopes_disabled():
        assert not AuditEvent.objects.filter(action="audit.viewed").exists()
    assert client.post(asked["Location"], {"reason": "request", "text": "Police ref 42"})["Location"] == listing

    assert client.get(listing).status_code == 200  # shows the teacher's removal of the student's message
    (look,) = looks_at(people, people.student)
    assert (look.reviewer_id, look.kind, look.reason, look.reason_text) == (
        operator.pk,
        "audit log",
        "request",
        "Police ref 42",
    )
    assert look.query == {"query": "action__exact=message.removed"}
    assert subjects_of(look) == {people.student.pk}  # whose message it was, not who removed it
    assert looks_at(other, other.student) == []  # the page showed nothing of the other school

    with scopes_disabled():
        event = AuditEvent.objects.get(action="message.sent", school=other.school)
    for page in (f"/admin/audit/auditevent/{event.pk}/change/", f"/admin/audit/auditevent/{event.pk}/history/"):
        assert client.get(page).status_code == 200
    assert [look.query for look in looks_at(other, other.student)] == [
        {"event": str(event.pk), "page": "history"},
        {"event": str(event.pk)},
    ]
    with scopes_disabled():  # and on the platform's chain, each page with the reason and the schools it showed
        viewed = list(AuditEvent.objects.filter(action="audit.viewed", school__isnull=True).values_list("payload"))
    assert [payload for (payload,) in viewed] == [
        {
            "query": "action__exact=message.removed",
            "reason": "request",
            "reason_text": "Police ref 42",
            "schools": [people.school.pk],
        },
        {"event": str(event.pk), "reason": "request", "reason_text": "Police ref 42", "schools": [other.school.pk]},
        {
            "event": str(event.pk),
            "page": "history",
            "reason": "request",
            "reason_text": "Police ref 42",
            "schools": [other.school.pk],
        },
    ]
    with time_machine.travel(timezone.now() + timedelta(minutes=31)):
        assert client.get(listing).status_code == 302  # the reason holds for half an hour
