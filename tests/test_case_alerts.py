"""Live alerts over the socket: staff hear of a case when it reaches their level, and only they do."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from django_scopes import scopes_disabled

from messaging.consumers import CLOSE_SIGNED_OUT
from moderation import cases, clock
from moderation.models import Case
from tests import test_socket
from tests.conftest import SchoolPeople
from tests.test_socket import connect, send_and_ack, until

# The socket tests' fixtures: a school with open class rooms, its class room; connections closed after.
people = test_socket.people
room = test_socket.room

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio,
    pytest.mark.usefixtures("close_thread_connections"),
]


async def frames_until_quiet(communicator: Any, timeout: float = 0.3) -> list[dict[str, Any]]:
    frames = []
    while not await communicator.receive_nothing(timeout=timeout):
        frames.append(await communicator.receive_json_from())
    return frames


async def test_a_flag_alerts_the_rooms_teacher_and_updates_the_others(people: SchoolPeople, room: int) -> None:
    student, _ = await connect(people.student)
    teacher, _ = await connect(people.teacher)
    moderator, _ = await connect(people.moderator)
    lead, _ = await connect(people.safeguarding_lead)
    ack = await send_and_ack(student, room, "nobody likes you")
    teacher_frames = await frames_until_quiet(teacher)
    assert [f["type"] for f in teacher_frames] == ["message", "alert", "case_updated"]
    alert = teacher_frames[1]["case"]
    assert (alert["level"], alert["severity"], alert["categories"]) == (1, 2, ["Bullying or harassment"])
    assert "body" not in alert
    assert "nobody likes you" not in str(alert)
    for staff in (moderator, lead):
        # Not members of the room: its messages reach them only after a `look` (tests/test_reading_on_record.py).
        assert [f["type"] for f in await frames_until_quiet(staff)] == ["case_updated"]
    assert {f["type"] for f in await frames_until_quiet(student)} <= {"message"}  # its own broadcast at most
    assert ack["message"]["state"] == "visible"
    for communicator in (student, teacher, moderator, lead):
        await communicator.disconnect()


async def test_self_harm_alerts_the_safeguarding_lead_at_once(people: SchoolPeople, room: int) -> None:
    student, _ = await connect(people.student)
    teacher, _ = await connect(people.teacher)
    lead, _ = await connect(people.safeguarding_lead)
    await send_and_ack(student, room, "i want to kill myself")
    alert = await until(lead, "alert")
    assert (alert["case"]["level"], alert["case"]["severity"]) == (3, 4)
    assert [f["type"] for f in await frames_until_quiet(teacher)] == ["message"]
    for communicator in (student, teacher, lead):
        await communicator.disconnect()


async def test_a_case_about_a_teacher_never_reaches_them(people: SchoolPeople, room: int) -> None:
    teacher, _ = await connect(people.teacher)
    lead, _ = await connect(people.safeguarding_lead)
    moderator, _ = await connect(people.moderator)
    await moderator.send_json_to({"type": "look", "room": room, "reason": "case"})  # not a member: a reason first
    await until(moderator, "looking")
    await send_and_ack(teacher, room, "text me on my number")
    alert = await until(lead, "alert")
    assert alert["case"]["staff_conduct"] is True
    assert {f["type"] for f in await frames_until_quiet(teacher)} <= {"message"}  # its own broadcast at most
    # Held messages reach the room's moderators; the case about a member of staff does not.
    assert [f["type"] for f in await frames_until_quiet(moderator)] == ["message"]
    for communicator in (teacher, lead, moderator):
        await communicator.disconnect()


async def test_suspending_an_account_closes_its_sockets(people: SchoolPeople, room: int) -> None:
    student, _ = await connect(people.student)
    await send_and_ack(student, room, "nobody likes you")

    def suspend() -> None:
        with scopes_disabled():
            case = Case.objects.get()
        cases.take_action(user=people.moderator, case_id=case.pk, action="suspend_author", reason="Threats")

    await sync_to_async(suspend)()
    while True:
        output = await student.receive_output(timeout=1)
        if output["type"] == "websocket.close":
            break
    assert output["code"] == CLOSE_SIGNED_OUT


async def test_the_servers_own_clock_escalates_and_alerts(people: SchoolPeople, room: int, settings: Any) -> None:
    student, _ = await connect(people.student)
    moderator, _ = await connect(people.moderator)
    await send_and_ack(student, room, "nobody likes you")
    await frames_until_quiet(moderator)

    def backdate() -> int:
        with scopes_disabled():
            case = Case.objects.get()
            Case.objects.filter(pk=case.pk).update(level_since=timezone.now() - timedelta(minutes=31))
        return case.pk

    case_id = await sync_to_async(backdate)()
    settings.COMMONROOM_CASE_CLOCK_SECONDS = 0.05
    task = clock.ensure_started()
    assert task is not None
    assert clock.ensure_started() is task
    try:
        alert = await asyncio.wait_for(until(moderator, "alert"), timeout=5)
    finally:
        clock.stop()
    assert (alert["case"]["id"], alert["case"]["level"], alert["case"]["state"]) == (case_id, 2, "escalated")
    for communicator in (student, moderator):
        await communicator.disconnect()
