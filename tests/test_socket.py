"""The socket: authenticated, origin-checked, thin; every bad frame gets an error, never a crash."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlparse

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.db import OperationalError, transaction
from django.test import override_settings
from django_scopes import scopes_disabled

from classes.models import Enrollment, User
from messaging.consumers import CLOSE_FLOODING, CLOSE_UNAUTHENTICATED, ChatConsumer
from messaging.live import tell_user
from messaging.models import Room
from messaging.sockets import SocketCount
from tests.conftest import SchoolPeople, make_school

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio,
    pytest.mark.usefixtures("close_thread_connections"),
]


@pytest.fixture
def people() -> SchoolPeople:
    return make_school("Socket School", "s", open_class_rooms=True)


@pytest.fixture
def other() -> SchoolPeople:
    return make_school("Other School", "o")


def room_of(people: SchoolPeople) -> int:
    """The class room's id (fixtures run before the test's event loop, so they may query)."""
    with scopes_disabled():
        return Room.objects.get(school_class=people.school_class).pk


@pytest.fixture
def room(people: SchoolPeople) -> int:
    return room_of(people)


@pytest.fixture
def cohort_room(people: SchoolPeople) -> int:
    with scopes_disabled():
        return Room.objects.get(cohort=people.cohort).pk


@pytest.fixture
def other_room(other: SchoolPeople) -> int:
    return room_of(other)


async def connect(user: Any) -> tuple[WebsocketCommunicator, dict[str, Any]]:
    communicator = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    ready = await communicator.receive_json_from()
    assert ready["type"] == "ready"
    return communicator, ready


async def send_and_ack(communicator: WebsocketCommunicator, room: int, body: str) -> dict[str, Any]:
    """Send a message and read frames until its acknowledgement (the sender hears the broadcast too)."""
    client_id = str(uuid.uuid4())
    await communicator.send_json_to({"type": "send", "room": room, "client_id": client_id, "body": body})
    while True:
        frame: dict[str, Any] = await communicator.receive_json_from()
        if frame["type"] == "ack" and frame["client_id"] == client_id:
            return frame


async def until(communicator: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = await communicator.receive_json_from()
        if frame["type"] == kind:
            return frame


async def test_anonymous_is_refused() -> None:
    communicator = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = AnonymousUser()
    connected, code = await communicator.connect()
    assert (connected, code) == (False, CLOSE_UNAUTHENTICATED)


def signed_in_cookie(user: Any) -> bytes:
    """A real session cookie for `user`, so that only the origin can refuse the socket."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def opens(application: Any, origin: bytes | None, cookie: bytes) -> bool:
    headers = [(b"host", b"localhost"), (b"cookie", cookie)] + ([(b"origin", origin)] if origin is not None else [])
    communicator = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, _ = await communicator.connect()
    if connected:
        await communicator.disconnect()
    return bool(connected)


async def test_a_foreign_origin_is_refused(people: SchoolPeople) -> None:
    from commonroom.asgi import application

    cookie = await sync_to_async(signed_in_cookie)(people.student)
    assert await opens(application, b"https://localhost", cookie)  # the site's own page, signed in
    for origin in (b"https://evil.example", b"http://localhost.evil.example", b"null", None):
        assert not await opens(application, origin, cookie), origin


async def test_over_https_the_allowed_host_over_plain_http_is_refused(people: SchoolPeople, settings: Any) -> None:
    """In production (secure cookies) a page of the site itself, but served over http or on another
    port, may not open the socket; https on the site's port may (as may a trusted origin)."""
    from commonroom import routing

    settings.DEBUG, settings.SESSION_COOKIE_SECURE = False, True
    settings.ALLOWED_HOSTS, settings.CSRF_TRUSTED_ORIGINS = ["localhost"], ["https://*.school.example"]
    application = routing.socket_application()
    cookie = await sync_to_async(signed_in_cookie)(people.student)
    assert await opens(application, b"https://localhost", cookie)
    assert await opens(application, b"https://rooms.school.example", cookie)
    assert not await opens(application, b"http://localhost", cookie)
    assert not await opens(application, b"https://localhost:8443", cookie)
    assert not await opens(application, b"null", cookie)
    assert not await opens(application, None, cookie)
    assert routing.allowed_origins() == ["https://localhost", "https://.school.example"]
    validator = application
    assert validator.valid_origin(urlparse("https://localhost"))
    assert validator.valid_origin(urlparse("https://rooms.school.example"))
    assert not validator.valid_origin(urlparse("http://rooms.school.example"))


async def test_ready_lists_the_rooms_to_read(people: SchoolPeople, room: int, cohort_room: int) -> None:
    communicator, ready = await connect(people.student)
    rooms = {room["id"]: room for room in ready["rooms"]}
    assert set(rooms) == {room, cohort_room}
    assert rooms[room]["state"] == "open"
    assert rooms[room]["kind"] == "class"
    await communicator.disconnect()


async def test_a_message_reaches_the_room_and_nobody_else(people: SchoolPeople, room: int) -> None:
    student, _ = await connect(people.student)
    teacher, _ = await connect(people.teacher)
    outsider, _ = await connect(people.other_student)
    client_id = str(uuid.uuid4())
    await student.send_json_to({"type": "send", "room": room, "client_id": client_id, "body": "Hello"})
    ack = await student.receive_json_from()
    assert ack["type"] == "ack", ack
    assert ack["client_id"] == client_id
    assert ack["message"]["seq"] == 1
    heard = await teacher.receive_json_from()
    assert (heard["type"], heard["message"]["body"], heard["message"]["id"]) == (
        "message",
        "Hello",
        ack["message"]["id"],
    )
    assert await outsider.receive_nothing(timeout=0.2)
    # A resend answers with the original and tells nobody again.
    await student.send_json_to({"type": "send", "room": room, "client_id": client_id, "body": "Hello"})
    again = await student.receive_json_from()
    assert again["message"]["id"] == ack["message"]["id"]
    assert await teacher.receive_nothing(timeout=0.2)
    for communicator in (student, teacher, outsider):
        await communicator.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_frame"),
        ('{"type": 7}', "invalid_frame"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "sync", "room": 1, "after": "zero"}', "invalid_seq"),
        ('{"type": "send", "room": "x", "client_id": "c1", "body": "hi"}', "invalid_client_id"),
        ('{"type": "send", "room": 999999, "client_id": "00000000-0000-0000-0000-000000000001", "body": "hi"}', "room_not_found"),
        ('{"type": "edit", "message": {"$gt": 0}, "body": "x"}', "message_not_found"),
        ("[" * 100_000, "frame_too_large"),
        ('{"type": "send", "room": 1, "client_id": "00000000-0000-0000-0000-000000000002", "body": "<script>alert(1)</script>' + "x" * 5000 + '"}', "body_too_long"),
    ],
    ids=["not-json", "not-object", "type-not-string", "unknown-type", "bad-seq", "bad-client-id", "no-such-room", "odd-message-id", "too-large", "body-too-long"],
)  # fmt: skip
async def test_bad_frames_get_an_error_and_the_socket_stays(
    people: SchoolPeople, frame: str, code: str, room: int
) -> None:
    communicator, _ = await connect(people.student)
    await communicator.send_to(text_data=frame)
    error = await communicator.receive_json_from()
    assert (error["type"], error["code"]) == ("error", code)
    assert isinstance(error["detail"], str)
    assert error["detail"]
    await communicator.send_json_to({"type": "sync", "room": room, "after": 0})
    assert (await communicator.receive_json_from())["type"] == "history"
    await communicator.disconnect()


async def test_another_schools_room_looks_like_no_room(people: SchoolPeople, other_room: int) -> None:
    communicator, _ = await connect(people.student)
    answers = []
    for room_id in (other_room, 999_999):
        await communicator.send_json_to({"type": "sync", "room": room_id, "after": 0})
        answers.append(await communicator.receive_json_from())
    assert answers[0] == answers[1] == {"type": "error", "code": "room_not_found", "detail": "There is no such room."}
    await communicator.disconnect()


async def test_a_reconnecting_client_gets_what_it_missed_in_order(people: SchoolPeople, room: int) -> None:
    teacher, _ = await connect(people.teacher)
    student, _ = await connect(people.student)
    await student.disconnect()
    for n in range(3):
        await send_and_ack(teacher, room, f"m{n}")
    student, ready = await connect(people.student)
    listed = next(r for r in ready["rooms"] if r["id"] == room)
    assert (listed["last_seq"], listed["unread"]) == (3, 3)
    await student.send_json_to({"type": "sync", "room": room, "after": 1})
    page = await student.receive_json_from()
    assert [m["body"] for m in page["messages"]] == ["m1", "m2"]
    assert page["more"] is False
    await student.disconnect()
    await teacher.disconnect()


async def test_flooding_is_limited_then_closed(people: SchoolPeople, monkeypatch: Any) -> None:
    """Refused, then closed; what the flooder sends before its connection is gone is dropped unread;
    and for a while it may not open another socket (a script reconnecting at once would otherwise get
    a fresh burst each time), while everyone else may."""
    from messaging import consumers

    communicator, _ = await connect(people.student)
    for _ in range(40):
        await communicator.send_to(text_data='{"type": "dance"}')
    codes = []
    while True:
        output = await communicator.receive_output(timeout=1)
        if output["type"] == "websocket.close":
            assert output["code"] == CLOSE_FLOODING
            break
        codes.append(json.loads(output["text"])["code"])
    assert "rate_limited" in codes
    while not await communicator.receive_nothing(timeout=0.2):  # answers to frames let through before
        await communicator.receive_output()
    for _ in range(10):
        await communicator.send_to(text_data='{"type": "dance"}')
    assert await communicator.receive_nothing(timeout=0.2)

    again = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/")
    again.scope["user"] = people.student
    connected, code = await again.connect()
    assert (connected, code) == (False, CLOSE_FLOODING)
    other, _ = await connect(people.other_student)
    await other.disconnect()
    monkeypatch.setitem(consumers._cooling_down, people.student.pk, 0.0)  # the cool-down is over
    later, ready = await connect(people.student)
    assert ready["type"] == "ready"
    await later.disconnect()


async def test_a_session_closed_for_flooding_is_turned_away_before_it_is_read(
    people: SchoolPeople, monkeypatch: Any
) -> None:
    """A script that reconnects at once after being closed for flooding costs the server nothing
    more: its session cookie is refused before the session store is asked (here a store that fails
    if asked); another person's session still opens."""
    from django.contrib.sessions.backends.db import SessionStore

    from commonroom.asgi import application
    from messaging import consumers

    flooder = await sync_to_async(signed_in_cookie)(people.student)
    other = await sync_to_async(signed_in_cookie)(people.other_student)
    session_key = flooder.decode().partition("=")[2]
    monkeypatch.setitem(consumers._cooling_down, session_key, time.monotonic() + 30)
    real_load = SessionStore.load

    def load(store: SessionStore) -> Any:
        if store.session_key == session_key:
            raise AssertionError("the session of a socket closed for flooding was read")
        return real_load(store)

    monkeypatch.setattr(SessionStore, "load", load)
    monkeypatch.setattr(consumers, "REFUSAL_DELAY", 0.0)
    assert not await opens(application, b"https://localhost", flooder)
    assert await opens(application, b"https://localhost", other)
    monkeypatch.setitem(consumers._cooling_down, session_key, 0.0)  # the cool-down is over
    monkeypatch.setattr(SessionStore, "load", real_load)
    assert await opens(application, b"https://localhost", flooder)


async def test_a_flood_is_cut_off_while_the_consumer_waits_for_the_database(
    people: SchoolPeople, room: int, monkeypatch: Any
) -> None:
    """The limit applies as frames arrive: a socket flooding while its first frame is still waiting
    for the database is refused and closed without waiting for it (daphne would otherwise queue the
    whole flood for the consumer)."""
    from messaging import services

    release = threading.Event()
    real = services.send_message

    def slow_send(**kwargs: Any) -> Any:
        release.wait(timeout=10)
        return real(**kwargs)

    monkeypatch.setattr(services, "send_message", slow_send)
    communicator, _ = await connect(people.student)
    await communicator.send_json_to({"type": "send", "room": room, "client_id": str(uuid.uuid4()), "body": "hi"})
    for _ in range(40):
        await communicator.send_to(text_data='{"type": "dance"}')
    try:
        seen = []
        while (output := await communicator.receive_output(timeout=3))["type"] != "websocket.close":
            seen.append(json.loads(output["text"])["code"])
        assert output["code"] == CLOSE_FLOODING
        assert seen == ["rate_limited", "rate_limited"]
        assert not release.is_set()  # the send was still waiting all along
    finally:
        release.set()


async def test_an_ended_enrollment_stops_delivery_on_an_open_socket(people: SchoolPeople, room: int) -> None:
    student, _ = await connect(people.student)
    teacher, _ = await connect(people.teacher)

    def end() -> None:
        with scopes_disabled(), transaction.atomic():
            Enrollment.objects.filter(user=people.student).update(active=False)
        tell_user(people.student.pk, "rooms.changed")

    await sync_to_async(end)()
    removed = await student.receive_json_from()
    assert removed == {"type": "room_removed", "room": room}
    assert (await student.receive_json_from())["type"] == "ready"
    await send_and_ack(teacher, room, "after")
    assert await student.receive_nothing(timeout=0.2)
    await student.disconnect()
    await teacher.disconnect()


async def test_groups_are_left_on_disconnect(
    people: SchoolPeople, room: int, cohort_room: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from messaging.consumers import room_group, user_group

    layer = get_channel_layer()
    joined: list[str] = []
    left: list[str] = []
    group_add, group_discard = layer.group_add, layer.group_discard

    async def add(group: str, channel: str) -> None:
        joined.append(group)
        await group_add(group, channel)

    async def discard(group: str, channel: str) -> None:
        left.append(group)
        await group_discard(group, channel)

    monkeypatch.setattr(layer, "group_add", add)
    monkeypatch.setattr(layer, "group_discard", discard)
    communicator, _ = await connect(people.student)
    expected = {room_group(room), room_group(cohort_room), user_group(people.student.pk)}
    assert set(joined) == expected
    await communicator.disconnect()
    assert set(left) == expected


async def test_ending_an_enrollment_in_the_admin_reaches_the_open_socket(people: SchoolPeople, room: int) -> None:
    from classes.services import end_enrollment

    student, _ = await connect(people.student)

    def end() -> None:
        with scopes_disabled():
            enrollment = Enrollment.objects.get(user=people.student, school_class=people.school_class)
            end_enrollment(actor=people.admin, enrollment=enrollment, reason="moved set")

    await sync_to_async(end)()
    assert await student.receive_json_from() == {"type": "room_removed", "room": room}
    await student.disconnect()


async def test_a_disabled_person_is_disconnected(people: SchoolPeople) -> None:
    from classes.services import save_provisioned
    from messaging.consumers import CLOSE_SIGNED_OUT

    student, _ = await connect(people.student)

    def disable() -> None:
        people.student.enabled = False
        save_provisioned(actor=people.admin, obj=people.student, action="person.updated", fields=["enabled"])

    await sync_to_async(disable)()
    output = await student.receive_output(timeout=1)
    assert output == {"type": "websocket.close", "code": CLOSE_SIGNED_OUT}


async def test_signing_out_closes_the_sockets(people: SchoolPeople) -> None:
    from django.contrib.auth.signals import user_logged_out
    from django.test import RequestFactory

    from messaging.consumers import CLOSE_SIGNED_OUT

    student, _ = await connect(people.student)
    request = RequestFactory().post("/logout/")
    await sync_to_async(user_logged_out.send)(sender=User, request=request, user=people.student)
    output = await student.receive_output(timeout=1)
    assert output == {"type": "websocket.close", "code": CLOSE_SIGNED_OUT}


async def test_a_new_password_closes_the_sockets(people: SchoolPeople) -> None:
    """An admin sets a student's password: the old sessions end, and so do the open sockets."""
    from django.test import Client

    from messaging.consumers import CLOSE_SIGNED_OUT

    student, _ = await connect(people.student)

    def set_password() -> int:
        client = Client()
        assert client.login(username=people.admin.username, password="pw")
        url = f"/admin/classes/user/{people.student.pk}/password/"
        return client.post(url, {"password1": "a-new-Password-1", "password2": "a-new-Password-1"}).status_code

    assert await sync_to_async(set_password)() == 302
    output = await student.receive_output(timeout=1)
    assert output == {"type": "websocket.close", "code": CLOSE_SIGNED_OUT}


async def test_a_long_lived_socket_closes_when_its_session_expires(people: SchoolPeople, monkeypatch: Any) -> None:
    """A socket opened with a real session cookie re-checks the session every SESSION_RECHECK seconds;
    once the session has gone (expired, or deleted on the server) the socket closes."""
    from django.contrib.sessions.models import Session
    from django.test import Client

    from commonroom import routing
    from messaging import consumers
    from messaging.consumers import CLOSE_SIGNED_OUT

    monkeypatch.setattr(consumers, "SESSION_RECHECK", 0.2)

    def sign_in() -> str:
        client = Client()
        assert client.login(username=people.student.username, password="pw")
        return str(client.cookies["sessionid"].value)

    key = await sync_to_async(sign_in)()
    origin = routing.allowed_origins()[0]
    origin = origin if "://" in origin else f"http://{origin}"
    communicator = WebsocketCommunicator(
        routing.socket_application(),
        "/ws/",
        headers=[(b"origin", origin.encode()), (b"host", b"localhost"), (b"cookie", f"sessionid={key}".encode())],
    )
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["type"] == "ready"
    # Still signed in: the checks pass and the socket stays open.
    assert await communicator.receive_nothing(timeout=0.6)
    await sync_to_async(lambda: Session.objects.filter(session_key=key).delete())()
    output = await communicator.receive_output(timeout=1)
    assert output == {"type": "websocket.close", "code": CLOSE_SIGNED_OUT}


async def test_too_many_sockets_for_one_person_are_refused(people: SchoolPeople, monkeypatch: Any) -> None:
    from messaging import consumers

    monkeypatch.setattr(consumers, "MAX_SOCKETS", 2)
    first, _ = await connect(people.student)
    second, _ = await connect(people.student)
    other, _ = await connect(people.other_student)  # someone else is not held up
    third = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/")
    third.scope["user"] = people.student
    connected, _ = await third.connect()
    assert connected
    assert (await third.receive_json_from())["code"] == "too_many_sockets"
    assert await third.receive_output(timeout=1) == {"type": "websocket.close", "code": consumers.CLOSE_TOO_MANY}
    await first.disconnect()
    again, ready = await connect(people.student)  # one closed: one more may open
    assert ready["type"] == "ready"
    for communicator in (second, other, again):
        await communicator.disconnect()
    assert consumers.open_sockets.held(people.student.pk) == 0


@pytest.mark.redis
async def test_a_place_left_by_a_killed_server_lapses() -> None:
    """Across processes the count lives in Redis. A socket whose process was killed never releases its
    place; the place lapses when its lease runs out, while a renewed one keeps counting."""
    person = 10_000_000 + random.randrange(1_000_000)
    dead, alive = SocketCount(lease=180), SocketCount(lease=180)  # two server processes
    now = time.time()
    assert await dead.claim(person, "dead.socket", limit=1, now=now - 200)  # claimed, then its process died
    assert await alive.claim(person, "live.socket", limit=1, now=now)  # the dead one's lease ran out
    assert not await alive.claim(person, "another.socket", limit=1, now=now + 1)
    await alive.renew(person, "live.socket", now=now + 170)  # its lease now runs to now + 350
    assert not await alive.claim(person, "another.socket", limit=1, now=now + 300)
    assert await dead.claim(person, "another.socket", limit=2, now=now + 300)  # each counts for one
    await alive.release(person, "live.socket")
    await dead.release(person, "another.socket")
    assert await alive.claim(person, "last.socket", limit=1, now=now + 300)
    await alive.release(person, "last.socket")


async def test_with_redis_away_the_count_is_kept_in_the_process() -> None:
    """Redis unreachable: sockets are still let in (the channel layer's outage must not lock a school
    out), and counted by their own process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"  # nothing listens there
    count = SocketCount(lease=180)
    with override_settings(REDIS_URL=nowhere):
        assert await count.claim(1, "one", limit=2)
        assert await count.claim(1, "two", limit=2)
        assert not await count.claim(1, "three", limit=2)
        await count.release(1, "one")
        assert await count.claim(1, "three", limit=2)
    assert count.held(1) == 2


async def test_a_database_that_cannot_be_reached_gets_a_clear_error(
    people: SchoolPeople, room: int, monkeypatch: Any
) -> None:
    """What the driver raises when PostgreSQL is away becomes an `unavailable` error, with the send's
    client id, never an acknowledgement; the socket stays open and works once the database is back
    (shown with a real server and a cut connection in tests/test_faults.py)."""
    from messaging import services

    communicator, _ = await connect(people.student)
    real = services.send_message

    def unreachable(**kwargs: Any) -> Any:
        raise OperationalError("connection to server at 127.0.0.1, port 5432 failed: Connection refused")

    monkeypatch.setattr(services, "send_message", unreachable)
    client_id = str(uuid.uuid4())
    await communicator.send_json_to({"type": "send", "room": room, "client_id": client_id, "body": "hello"})
    error = await communicator.receive_json_from()
    assert error["type"] == "error"
    assert error["code"] == "unavailable"
    assert error["client_id"] == client_id
    monkeypatch.setattr(services, "send_message", real)
    await communicator.send_json_to({"type": "send", "room": room, "client_id": client_id, "body": "hello"})
    ack = await communicator.receive_json_from(timeout=10)  # the first real send loads the screening model
    assert ack["type"] == "ack"
    assert ack["client_id"] == client_id
    await communicator.disconnect()


async def test_the_session_re_check_survives_a_database_outage(people: SchoolPeople, monkeypatch: Any) -> None:
    """A re-check that cannot reach the database keeps the socket open and asks again next time,
    rather than closing every socket of the school at once."""
    from messaging import consumers

    monkeypatch.setattr(consumers, "SESSION_RECHECK", 0.05)
    answers = iter([OperationalError("the database is away"), OperationalError("still away"), False])

    async def still_signed_in(self: Any) -> bool:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return bool(answer)

    monkeypatch.setattr(consumers.ChatConsumer, "_still_signed_in", still_signed_in)
    communicator, _ = await connect(people.student)
    # Two failed checks leave it open; the third, answered "signed out", closes it.
    assert await communicator.receive_output(timeout=3) == {
        "type": "websocket.close",
        "code": consumers.CLOSE_SIGNED_OUT,
    }
    assert next(answers, None) is None


async def test_no_frame_makes_a_room(people: SchoolPeople) -> None:
    communicator, _ = await connect(people.teacher)
    for kind in ("create_room", "room", "new_room", "dm", "direct"):
        await communicator.send_json_to({"type": kind, "name": "private", "user": people.student.pk})
        assert (await communicator.receive_json_from())["code"] == "unknown_type"
    count = await sync_to_async(lambda: Room.objects.with_scopes_disabled().count())()  # type: ignore[attr-defined]
    assert count == 3  # the two classes and the cohort of the fixture school
    await communicator.disconnect()


async def test_a_revoked_moderator_stops_hearing_the_room(people: SchoolPeople, room: int) -> None:
    from classes.models import StaffRole
    from classes.services import revoke_role

    moderator, ready = await connect(people.moderator)
    assert room in {r["id"] for r in ready["rooms"]}

    def revoke() -> None:
        operator = User.objects.create_superuser("op.revoke", password="pw")
        with scopes_disabled():
            revoke_role(actor=operator, staff_role=StaffRole.objects.get(user=people.moderator, role="moderator"))

    await sync_to_async(revoke)()
    removed = {(await moderator.receive_json_from())["room"] for _ in range(3)}
    assert room in removed
    assert (await moderator.receive_json_from()) == {"type": "ready", "rooms": [], "policy": None}
    await moderator.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type": "sync", "room": Infinity, "after": 0}', "room_not_found"),
        ('{"type": "sync", "room": 1e400, "after": 0}', "room_not_found"),
        ('{"type": "edit", "message": -Infinity, "body": "x"}', "message_not_found"),
        ('{"type": "send", "room": 1, "client_id": "00000000-0000-0000-0000-000000000003", "body": "hi \\ud800"}', "invalid_body"),
        ('{"type": "sync", "room": true, "after": 0}', "room_not_found"),
    ],
    ids=["infinity", "huge-number", "minus-infinity", "lone-surrogate", "boolean-id"],
)  # fmt: skip
async def test_odd_numbers_and_text_get_an_error(people: SchoolPeople, room: int, frame: str, code: str) -> None:
    communicator, _ = await connect(people.student)
    await communicator.send_to(text_data=frame.replace('"room": 1,', f'"room": {room},'))
    assert (await communicator.receive_json_from())["code"] == code
    await communicator.disconnect()


async def test_a_mute_reason_is_for_the_student_and_staff_only(people: SchoolPeople, room: int) -> None:
    student, _ = await connect(people.student)
    aide, _ = await connect(people.aide)
    teacher, _ = await connect(people.teacher)
    await teacher.send_json_to({"type": "mute", "room": room, "user": people.student.pk, "reason": "Behaviour plan"})
    assert (await student.receive_json_from())["reason"] == "Behaviour plan"
    assert (await teacher.receive_json_from())["type"] == "muted"  # the room's teacher moderates it
    assert await aide.receive_nothing(timeout=0.3)
    for communicator in (student, aide, teacher):
        await communicator.disconnect()


async def test_a_held_message_and_its_removal_stay_private(people: SchoolPeople, room: int, settings: Any) -> None:
    settings.COMMONROOM_SCREENERS = ["tests.test_messaging_services.hold_everything"]
    student, _ = await connect(people.student)
    aide, _ = await connect(people.aide)
    teacher, _ = await connect(people.teacher)
    ack = await send_and_ack(student, room, "borderline")
    assert ack["message"]["state"] == "held"
    assert (await teacher.receive_json_from())["message"]["id"] == ack["message"]["id"]
    await student.send_json_to({"type": "delete", "message": ack["message"]["id"]})
    assert (await until(student, "message_removed"))["message"]["id"] == ack["message"]["id"]
    assert (await until(teacher, "message_removed"))["message"]["id"] == ack["message"]["id"]
    assert await aide.receive_nothing(timeout=0.3)
    for communicator in (student, aide, teacher):
        await communicator.disconnect()


async def test_ready_carries_the_acceptable_use_policy_to_accept(people: SchoolPeople, room: int) -> None:
    from messaging.models import AcceptableUsePolicy

    def publish() -> None:
        from django.utils import timezone

        with scopes_disabled():
            AcceptableUsePolicy.objects.create(
                school=people.school, version=1, text="Be kind.", published=timezone.now()
            )

    await sync_to_async(publish)()
    student, ready = await connect(people.student)
    assert ready["policy"] == {"version": 1, "text": "Be kind.", "accepted": False}
    client_id = str(uuid.uuid4())
    await student.send_json_to({"type": "send", "room": room, "client_id": client_id, "body": "hi"})
    assert (await student.receive_json_from())["code"] == "policy_not_accepted"
    await student.send_json_to({"type": "accept_policy", "version": 1})
    assert (await until(student, "ready"))["policy"]["accepted"] is True
    await send_and_ack(student, room, "hi")
    await student.disconnect()


async def test_a_report_is_acknowledged_and_recorded(people: SchoolPeople, room: int) -> None:
    teacher, _ = await connect(people.teacher)
    student, _ = await connect(people.student)
    ack = await send_and_ack(teacher, room, "See me after class")
    message = ack["message"]["id"]
    await student.send_json_to({"type": "report", "message": message, "category": "bullying", "note": "odd"})
    assert await until(student, "reported") == {"type": "reported", "message": message}
    await student.send_json_to({"type": "report", "message": message, "category": "made-up"})
    assert (await until(student, "error"))["code"] == "invalid_category"

    def recorded() -> list[dict[str, Any]]:
        from audit.models import AuditEvent

        with scopes_disabled():
            return [e.payload for e in AuditEvent.objects.filter(action="message.reported", actor=people.student)]

    assert await database_sync_to_async(recorded)() == [{"room": room, "seq": 1, "category": "bullying", "note": "odd"}]
    for communicator in (student, teacher):
        await communicator.disconnect()


async def test_pages_say_which_request_they_answer(people: SchoolPeople, room: int) -> None:
    teacher, _ = await connect(people.teacher)
    for n in range(3):
        await send_and_ack(teacher, room, f"m{n}")
    await teacher.send_json_to({"type": "history", "room": room, "before": 4})
    older = await until(teacher, "history")
    assert (older["before"], "after" in older) == (4, False)
    assert [m["seq"] for m in older["messages"]] == [1, 2, 3]
    await teacher.send_json_to({"type": "sync", "room": room, "after": 2})
    newer = await until(teacher, "history")
    assert (newer["after"], "before" in newer) == (2, False)
    assert [m["seq"] for m in newer["messages"]] == [3]
    await teacher.disconnect()


async def test_ready_says_why_a_muted_student_cannot_post(people: SchoolPeople, room: int) -> None:
    teacher, _ = await connect(people.teacher)
    await teacher.send_json_to({"type": "mute", "room": room, "user": people.student.pk, "reason": "Take a break"})
    await until(teacher, "muted")
    student, ready = await connect(people.student)
    listed = next(r for r in ready["rooms"] if r["id"] == room)
    assert listed["muted"] == "Take a break"
    assert listed["refusal"] == {"code": "muted", "detail": "A teacher has muted you in this room: Take a break"}
    assert listed["personal"] is None  # an unmute lets them post
    assert listed["moderator"] is False
    teacher_room = next(r for r in (await connect(people.teacher))[1]["rooms"] if r["id"] == room)
    assert (teacher_room["moderator"], teacher_room["refusal"], teacher_room["muted"]) == (True, None, None)
    await student.disconnect()
    await teacher.disconnect()
