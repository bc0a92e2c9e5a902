"""End to end: two real daphne processes sharing Redis and PostgreSQL, and real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Origin

from tests.conftest import SchoolPeople, make_school
from tests.servers import daphne_servers, frames_until, private_redis, session_cookie

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[int]]:
    """Two daphne processes on loopback, on the test database and the test Redis."""
    with daphne_servers(tmp_path) as ports:
        yield ports


@pytest.fixture
def people() -> SchoolPeople:
    return make_school("E2E School", "e", open_class_rooms=True)


def test_a_message_crosses_from_one_server_to_the_other(servers: list[int], people: SchoolPeople) -> None:
    student_cookie, teacher_cookie = session_cookie(people.student), session_cookie(people.teacher)

    async def conversation() -> None:
        first, second = (f"ws://127.0.0.1:{port}/ws/" for port in servers)
        async with (
            connect(
                first, origin=Origin(f"http://127.0.0.1:{servers[0]}"), additional_headers={"Cookie": student_cookie}
            ) as student,
            connect(
                second, origin=Origin(f"http://127.0.0.1:{servers[1]}"), additional_headers={"Cookie": teacher_cookie}
            ) as teacher,
        ):
            ready = await frames_until(student, "ready")
            await frames_until(teacher, "ready")
            room = next(r["id"] for r in ready["rooms"] if r["kind"] == "class")
            client_id = str(uuid.uuid4())
            await student.send(
                json.dumps({"type": "send", "room": room, "client_id": client_id, "body": "Across servers"})
            )
            ack = await frames_until(student, "ack")
            heard = await frames_until(teacher, "message")
            assert heard["message"]["id"] == ack["message"]["id"]
            assert heard["message"]["body"] == "Across servers"
            # The same client id sent again, through the other server, is the same message.
            async with connect(
                second,
                origin=Origin(f"http://127.0.0.1:{servers[1]}"),
                additional_headers={"Cookie": student_cookie},
            ) as again:
                await frames_until(again, "ready")
                await again.send(
                    json.dumps({"type": "send", "room": room, "client_id": client_id, "body": "Across servers"})
                )
                assert (await frames_until(again, "ack"))["message"]["id"] == ack["message"]["id"]

    asyncio.run(conversation())


def test_a_foreign_page_cannot_open_a_socket(servers: list[int], people: SchoolPeople) -> None:
    cookie = session_cookie(people.student)

    async def attempt(origin: str) -> bool:
        try:
            async with connect(
                f"ws://127.0.0.1:{servers[0]}/ws/", origin=Origin(origin), additional_headers={"Cookie": cookie}
            ) as ws:
                await frames_until(ws, "ready", timeout=3)
                return True
        except Exception:  # noqa: BLE001  (a refused handshake or a close: the socket did not open)
            return False

    assert asyncio.run(attempt(f"http://127.0.0.1:{servers[0]}")) is True
    for origin in ("https://evil.example", "null", f"https://127.0.0.1:{servers[0]}x"):
        assert asyncio.run(attempt(origin)) is False, origin


def test_the_same_send_racing_through_two_servers_makes_one_message(servers: list[int], people: SchoolPeople) -> None:
    from django_scopes import scopes_disabled

    from messaging.models import Message

    cookie = session_cookie(people.student)

    async def race() -> list[int]:
        urls = [(f"ws://127.0.0.1:{port}/ws/", Origin(f"http://127.0.0.1:{port}")) for port in servers]
        async with (
            connect(urls[0][0], origin=urls[0][1], additional_headers={"Cookie": cookie}) as one,
            connect(urls[1][0], origin=urls[1][1], additional_headers={"Cookie": cookie}) as two,
        ):
            ready = await frames_until(one, "ready")
            await frames_until(two, "ready")
            room = next(r["id"] for r in ready["rooms"] if r["kind"] == "class")
            frame = json.dumps({"type": "send", "room": room, "client_id": client_id, "body": "once"})
            await asyncio.gather(one.send(frame), two.send(frame))
            acks = await asyncio.gather(frames_until(one, "ack"), frames_until(two, "ack"))
            return [ack["message"]["id"] for ack in acks]

    client_id = str(uuid.uuid4())
    ids = asyncio.run(race())
    assert ids[0] == ids[1]
    with scopes_disabled():
        assert Message.objects.filter(client_id=client_id).count() == 1


def test_redis_restarting_mid_conversation_loses_nothing(tmp_path: Path, people: SchoolPeople) -> None:
    """Redis goes away for a second in the middle of a conversation: messages sent meanwhile are still
    saved, the receiver finds the gap in the sequence numbers and fills it with `sync`, and live
    delivery resumes by itself once Redis is back."""
    student_cookie, teacher_cookie = session_cookie(people.student), session_cookie(people.teacher)
    with private_redis() as (redis_url, (stop, start)), daphne_servers(tmp_path, 1, redis_url) as [port]:

        async def conversation() -> None:
            url, origin = f"ws://127.0.0.1:{port}/ws/", Origin(f"http://127.0.0.1:{port}")
            async with (
                connect(url, origin=origin, additional_headers={"Cookie": student_cookie}) as student,
                connect(url, origin=origin, additional_headers={"Cookie": teacher_cookie}) as teacher,
            ):
                ready = await frames_until(student, "ready")
                await frames_until(teacher, "ready")
                room = next(r["id"] for r in ready["rooms"] if r["kind"] == "class")

                async def send(body: str) -> dict[str, Any]:
                    client_id = str(uuid.uuid4())
                    frame = {"type": "send", "room": room, "client_id": client_id, "body": body}
                    await student.send(json.dumps(frame))
                    while True:  # its acknowledgement (an error here would fail the test)
                        answer = json.loads(await asyncio.wait_for(student.recv(), 10))
                        if answer.get("client_id") == client_id:
                            assert answer["type"] == "ack", answer
                            return dict(answer["message"])

                before = await send("Before the outage")
                assert (await frames_until(teacher, "message"))["message"]["seq"] == before["seq"]
                await asyncio.to_thread(stop)
                # With Redis away a message is still saved, and its sender told so (an ack, not an error).
                sent: list[dict[str, Any]] = [await send("While Redis is away")]
                await asyncio.to_thread(start)
                # Messages sent before the server has subscribed again are saved but not delivered
                # live (at most once); the next ones are, within seconds, with nothing restarted.
                live: dict[str, Any] | None = None
                for n in range(40):
                    sent.append(await send(f"After the outage {n}"))
                    try:
                        live = (await frames_until(teacher, "message", timeout=0.5))["message"]
                        break
                    except TimeoutError:
                        continue
                assert live is not None, "live delivery did not resume"
                while live["seq"] != sent[-1]["seq"]:  # a frame that came late: the later ones follow it
                    live = (await frames_until(teacher, "message", timeout=5))["message"]
                assert live["seq"] == sent[-1]["seq"]
                # The teacher's client fills the gap from the room's sequence numbers, in order.
                await teacher.send(json.dumps({"type": "sync", "room": room, "after": before["seq"]}))
                page = await frames_until(teacher, "history")
                assert [m["seq"] for m in page["messages"]] == [m["seq"] for m in sent]
                bodies = ["While Redis is away", *(f"After the outage {n}" for n in range(len(sent) - 1))]
                assert [m["body"] for m in page["messages"]] == bodies

        asyncio.run(conversation())


def test_the_socket_limit_counts_every_server(servers: list[int], people: SchoolPeople) -> None:
    """A person's sockets are counted across server processes: 10 open, spread over two servers, and
    the 11th is refused on either; once one closes, another may open."""
    from messaging.consumers import CLOSE_TOO_MANY, MAX_SOCKETS

    cookie = session_cookie(people.student)
    urls = [(f"ws://127.0.0.1:{port}/ws/", Origin(f"http://127.0.0.1:{port}")) for port in servers]

    async def scenario() -> None:
        async with AsyncExitStack() as stack:
            open_ones = []
            for n in range(MAX_SOCKETS):
                url, origin = urls[n % 2]
                ws = await stack.enter_async_context(connect(url, origin=origin, additional_headers={"Cookie": cookie}))
                await frames_until(ws, "ready")
                open_ones.append(ws)
            for url, origin in urls:
                async with connect(url, origin=origin, additional_headers={"Cookie": cookie}) as refused:
                    error = json.loads(await asyncio.wait_for(refused.recv(), 10))
                    assert error["code"] == "too_many_sockets"
                    await refused.wait_closed()
                    assert refused.close_code == CLOSE_TOO_MANY
            await open_ones[0].close()
            url, origin = urls[1]
            async with connect(url, origin=origin, additional_headers={"Cookie": cookie}) as again:
                await frames_until(again, "ready")

    asyncio.run(scenario())


def test_requests_leave_no_database_connections_behind(servers: list[int], people: SchoolPeople) -> None:
    """Under ASGI each HTTP request runs in a thread of its own; a connection kept by that thread
    would outlive it (one per request, until PostgreSQL refuses more). Each request closes its own
    connection when it ends; the sockets' thread keeps one per process."""
    from django.db import connection

    cookie = session_cookie(people.student)
    for _ in range(40):
        request = urllib.request.Request(f"http://127.0.0.1:{servers[0]}/", headers={"Cookie": cookie})
        with urllib.request.urlopen(request, timeout=10) as page:  # noqa: S310  (http on loopback)
            assert page.status == 200
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        held = cursor.fetchone()[0]
    assert held <= 2 * 2  # two processes, each with the sockets' connection and at most one request's
