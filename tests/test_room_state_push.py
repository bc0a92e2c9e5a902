"""A room's state reaches its open sockets as soon as it changes, not at their next `ready`.

Changes of people (disabled, suspended, enrolled, ended), of the class or cohort (archived, graduated),
of the school's settings, and of the clock (quiet hours starting and ending) are each pushed to every
socket of the room as a `room_state` frame.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.utils import timezone
from django_scopes import scopes_disabled

from classes import services
from classes.models import Enrollment, SchoolClass, User
from messaging import services as messaging
from messaging.models import Room
from messaging.rooms import sync_rooms
from moderation import cases
from moderation.models import Case
from tests.conftest import SchoolPeople, make_school
from tests.test_socket import connect

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio,
    pytest.mark.usefixtures("close_thread_connections"),
]


@pytest.fixture
def people() -> SchoolPeople:
    return make_school("Push School", "p", open_class_rooms=True)


@pytest.fixture
def small(people: SchoolPeople) -> int:
    """A class of one teacher and two students: open, one student away from a room of two."""
    with scopes_disabled(), transaction.atomic():
        klass = SchoolClass.objects.create(school=people.school, title="Small group")
        klass.terms.add(people.year)
        for user, role in ((people.teacher, "teacher"), (people.student, "student"), (people.other_student, "student")):
            Enrollment.objects.create(school=people.school, school_class=klass, user=user, role=role)
        sync_rooms([people.school.pk])
        return Room.objects.get(school_class=klass).pk


async def state_of(socket: WebsocketCommunicator, room: int, timeout: float = 2) -> dict[str, Any]:
    """The next `room_state` frame for `room` (other frames, such as a new `ready`, are passed over)."""
    while True:
        frame: dict[str, Any] = await socket.receive_json_from(timeout=timeout)
        if frame["type"] == "room_state" and frame["room"] == room:
            return frame


def listed_state(ready: dict[str, Any], room: int) -> str:
    return str(next(r["state"] for r in ready["rooms"] if r["id"] == room))


async def test_disabling_a_student_tells_the_room_it_is_locked_at_once(people: SchoolPeople, small: int) -> None:
    teacher, ready = await connect(people.teacher)
    assert listed_state(ready, small) == "open"

    def disable(enabled: bool) -> None:
        person = User.objects.get(pk=people.other_student.pk)
        person.enabled = enabled
        services.save_provisioned(actor=people.admin, obj=person, action="person.updated", fields=["enabled"])

    await sync_to_async(disable)(False)
    frame = await state_of(teacher, small)
    assert (frame["state"], frame["reason"]) == ("locked", "This room opens when a second adult joins it.")
    await sync_to_async(disable)(True)
    assert (await state_of(teacher, small))["state"] == "open"
    await teacher.disconnect()


async def test_suspending_from_a_case_and_lifting_it_are_pushed(people: SchoolPeople, small: int) -> None:
    def open_case() -> int:
        sent = messaging.send_message(
            user=people.other_student, room_id=small, client_id=uuid.uuid4(), body="you are all losers"
        )
        messaging.report_message(user=people.student, message_id=sent.message.pk, category="bullying", note="")
        with scopes_disabled():
            return Case.objects.get(message_id=sent.message.pk).pk

    case = await sync_to_async(open_case)()
    student, _ = await connect(people.student)
    await sync_to_async(cases.take_action)(
        user=people.moderator, case_id=case, action="suspend_author", reason="Bullying"
    )
    assert (await state_of(student, small))["state"] == "locked"
    await sync_to_async(cases.take_action)(
        user=people.moderator, case_id=case, action="restore_author", reason="Spoken to"
    )
    assert (await state_of(student, small))["state"] == "open"
    await student.disconnect()


async def test_ending_an_enrollment_tells_the_others(people: SchoolPeople, small: int) -> None:
    teacher, _ = await connect(people.teacher)

    def end() -> None:
        with scopes_disabled():
            enrollment = Enrollment.objects.get(school_class__room__pk=small, user=people.student)
            services.end_enrollment(actor=people.admin, enrollment=enrollment, reason="changed sets")

    await sync_to_async(end)()
    assert (await state_of(teacher, small))["state"] == "locked"
    await teacher.disconnect()


async def test_the_year_end_makes_rooms_read_only(people: SchoolPeople, small: int) -> None:
    student, _ = await connect(people.student)

    def close() -> None:
        with scopes_disabled():
            services.close_year(actor=people.admin, school=people.school, today=date(2027, 7, 1))

    await sync_to_async(close)()
    frame = await state_of(student, small)
    assert (frame["state"], frame["reason"]) == ("read_only", "This class has ended.")
    await student.disconnect()


async def test_quiet_hours_start_and_end_by_the_clock(people: SchoolPeople, small: int) -> None:
    """Quiet hours set to begin a second from now and end two seconds later: the socket says so at each
    moment, with nobody doing anything."""
    local = timezone.localtime(timezone.now(), ZoneInfo(people.school.time_zone))
    start = (local + timedelta(seconds=2)).time().replace(microsecond=0)
    end = (local + timedelta(seconds=4)).time().replace(microsecond=0)

    def set_hours() -> None:
        with scopes_disabled():
            services.change_school_settings(
                actor=people.admin, school=people.school, quiet_hours_start=start, quiet_hours_end=end
            )

    await sync_to_async(set_hours)()
    student, ready = await connect(people.student)
    assert listed_state(ready, small) == "open"
    began = await state_of(student, small, timeout=5)
    assert began["state"] == "quiet_hours"
    assert began["reason"] == f"Quiet hours: posting opens again at {end:%H:%M}."
    assert (await state_of(student, small, timeout=5))["state"] == "open"
    await student.disconnect()


async def test_a_change_of_settings_reaches_open_sockets(people: SchoolPeople, small: int) -> None:
    """Quiet hours that cover now, set while a socket is open: its rooms go quiet at once."""
    student, _ = await connect(people.student)
    local = timezone.localtime(timezone.now(), ZoneInfo(people.school.time_zone))

    def set_hours() -> None:
        with scopes_disabled():
            services.change_school_settings(
                actor=people.admin,
                school=people.school,
                quiet_hours_start=(local - timedelta(hours=1)).time().replace(microsecond=0),
                quiet_hours_end=(local + timedelta(hours=1)).time().replace(microsecond=0),
            )

    await sync_to_async(set_hours)()
    assert (await state_of(student, small))["state"] == "quiet_hours"
    await asyncio.sleep(0)
    await student.disconnect()
