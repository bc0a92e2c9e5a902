"""Hostile frames: Hypothesis-generated JSON of wrong types and sizes, deep nesting, huge numbers, odd
Unicode, script tags and text that is not JSON at all. Whatever arrives, the socket answers with a
clear error (never `server_error`, which would be a crash caught), stays open, and still works."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from django_scopes import scopes_disabled
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from messaging import consumers
from messaging.consumers import HANDLERS, ChatConsumer
from messaging.models import Room
from tests.conftest import SchoolPeople, make_school

pytestmark = pytest.mark.django_db(transaction=True)

KNOWN_ERRORS = {
    "invalid_frame", "invalid_json", "unknown_type", "frame_too_large", "room_not_found", "message_not_found",
    "invalid_body", "invalid_client_id", "client_id_reused", "not_allowed", "invalid_seq", "invalid_reason",
    "invalid_category", "own_message", "policy_changed", "not_held", "not_removed", "edit_window_over",
    "not_a_member", "rejected", "invalid_note", "invalid_user", "student_not_found", "rate_limited",
}  # fmt: skip

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["<script>alert(1)</script>", "\u202e\u0000\ud7ff\U0001f600", "1e999", "-0", "NaN"])
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
FIELDS = ("room", "message", "body", "client_id", "after", "before", "up_to", "user", "reason", "category", "note")
FRAMES = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(HANDLERS)) | st.text(max_size=12)},
    optional=dict.fromkeys(FIELDS, VALUES) | {"version": VALUES},
).map(json.dumps)
RAW = FRAMES | VALUES.map(json.dumps) | st.text(max_size=300)


@pytest.fixture
def school() -> tuple[SchoolPeople, int]:
    people = make_school("Fuzz School", "z", open_class_rooms=True)
    with scopes_disabled():
        return people, Room.objects.get(school_class=people.school_class).pk


async def _exchange(people: SchoolPeople, room: int, frames: list[str]) -> list[dict[str, Any]]:
    communicator = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = people.student
    connected, _ = await communicator.connect()
    assert connected
    answers: list[dict[str, Any]] = [await communicator.receive_json_from()]
    for frame in frames:
        await communicator.send_input({"type": "websocket.receive", "text": frame})  # even an empty one
    client_id = str(uuid.uuid4())
    await communicator.send_json_to({"type": "send", "room": room, "client_id": client_id, "body": "still here"})
    while True:  # everything the frames got, then the acknowledgement of the message after them
        answer = await communicator.receive_json_from(timeout=5)
        answers.append(answer)
        if answer.get("type") == "ack" and answer.get("client_id") == client_id:
            break
    await communicator.disconnect()
    await database_sync_to_async(connections.close_all)()
    return answers


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(RAW, max_size=12))
@example(frames=["[" * 100_000 + "]" * 100_000])  # nesting deeper than the parser goes
@example(frames=['{"type": "send", "room": 1e999, "client_id": null, "body": ' + '"x" ' * 3 + "}"])
@example(frames=[json.dumps({"type": "send", "body": "y" * 20_000})])  # over the frame limit
@example(frames=[json.dumps({"type": "sync", "room": 10**40, "after": -(10**40)})])
def test_no_frame_breaks_the_socket(school: tuple[SchoolPeople, int], frames: list[str], monkeypatch: Any) -> None:
    people, room = school
    monkeypatch.setattr(consumers, "BURST", 1000.0)  # the flood limit has its own tests
    answers = async_to_sync(_exchange)(people, room, frames)
    codes = {answer["code"] for answer in answers if answer.get("type") == "error"}
    assert "server_error" not in codes
    assert codes <= KNOWN_ERRORS, codes - KNOWN_ERRORS
    assert answers[-1]["type"] == "ack"
