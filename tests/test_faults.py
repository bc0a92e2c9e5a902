"""Faults, with real processes on loopback: a server killed mid-send, the database cut away for a few
seconds, a client that stops reading, and a frame over daphne's size limit.

What a client may rely on (docs/protocol.md): a message it saw acknowledged is saved exactly once; one
it did not see acknowledged may be sent again with the same client id and is then saved once; and
gaps in a room's sequence numbers, whatever caused them, are filled in order with `sync`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import socket
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django_scopes import scopes_disabled
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from messaging.models import Message
from tests.conftest import SchoolPeople, make_school
from tests.fault_server import DIE_AFTER_SAVE, DIE_BEFORE_SAVE
from tests.servers import Daphne, daphne_processes, database_proxy, frames_until, session_cookie, the_database_url

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def people() -> SchoolPeople:
    return make_school("Fault School", "f", open_class_rooms=True)


@pytest.fixture
def cookie(people: SchoolPeople) -> dict[int, str]:
    """A signed-in session cookie for each person of the school, by id (made before any event loop runs)."""
    personas = [people.student, people.teacher, people.aide, people.moderator, people.safeguarding_lead]
    return {user.pk: session_cookie(user) for user in personas}


def open_socket(server: Daphne, cookie: str) -> Any:
    return connect(server.url, origin=server.origin, additional_headers={"Cookie": cookie})


async def class_room(ws: ClientConnection) -> int:
    ready = await frames_until(ws, "ready")
    return int(next(r["id"] for r in ready["rooms"] if r["kind"] == "class"))


def send_frame(room: int, body: str, client_id: str) -> str:
    return json.dumps({"type": "send", "room": room, "client_id": client_id, "body": body})


async def answer_to(ws: ClientConnection, client_id: str, timeout: float = 10) -> dict[str, Any]:
    """The server's answer (`ack` or `error`) to the send with `client_id`, skipping other frames."""
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame.get("client_id") == client_id:
            return frame


async def send(ws: ClientConnection, room: int, body: str, client_id: str | None = None) -> dict[str, Any]:
    """Send a message and return it as acknowledged (an error fails the test)."""
    client_id = client_id or str(uuid.uuid4())
    await ws.send(send_frame(room, body, client_id))
    answer = await answer_to(ws, client_id)
    assert answer["type"] == "ack", answer
    return dict(answer["message"])


async def look(ws: ClientConnection, room: int) -> None:
    """A moderator or the safeguarding lead, who read the room from outside it, say why first."""
    await ws.send(json.dumps({"type": "look", "room": room, "reason": "case", "reason_text": ""}))
    await frames_until(ws, "looking")


async def sync(ws: ClientConnection, room: int, after: int) -> list[dict[str, Any]]:
    """Every message of the room after `after`, as the server replays them (following `more`)."""
    replayed: list[dict[str, Any]] = []
    while True:
        await ws.send(json.dumps({"type": "sync", "room": room, "after": after}))
        page = await frames_until(ws, "history")
        replayed += page["messages"]
        if not page["more"]:
            return replayed
        after = page["messages"][-1]["seq"]


def saved(room: int) -> list[tuple[int, str, str]]:
    """The room's messages in the database: (seq, client id, body), in order."""
    with scopes_disabled():
        return [
            (seq, str(client_id), body)
            for seq, client_id, body in Message.objects.filter(room_id=room)
            .order_by("seq")
            .values_list("seq", "client_id", "body")
        ]


async def saved_now(room: int) -> list[tuple[int, str, str]]:
    """`saved`, from inside the test's event loop: in a thread of its own, whose connection is closed after."""

    def read() -> list[tuple[int, str, str]]:
        try:
            return saved(room)
        finally:
            connection.close()

    return await asyncio.to_thread(read)


def assert_gapless(rows: list[tuple[int, str, str]]) -> None:
    assert [row[0] for row in rows] == list(range(1, len(rows) + 1))
    assert len({row[1] for row in rows}) == len(rows)  # each client id once


async def until_closed(ws: ClientConnection) -> list[dict[str, Any]]:
    """What arrives on `ws` until its server goes away."""
    frames = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 15)))
    except ConnectionClosed:
        return frames


@pytest.mark.parametrize("moment", [DIE_BEFORE_SAVE, DIE_AFTER_SAVE], ids=["before-save", "after-save"])
def test_a_server_killed_mid_send_loses_and_duplicates_nothing(
    tmp_path: Path, people: SchoolPeople, cookie: dict[int, str], moment: str
) -> None:
    """Server A is killed (SIGKILL) while saving a message: before the save, or after the commit and
    before the broadcast and the acknowledgement. The sender saw no acknowledgement, so it sends the
    message again with the same client id through server B: it is then saved exactly once. A reader
    that was on A reconnects to B and a reader on B notices the gap; both replay it in order."""
    with (
        daphne_processes(tmp_path / "a", 1, application="tests.fault_server:application") as [doomed],
        daphne_processes(tmp_path / "b", 1) as [survivor],
    ):

        async def scenario() -> int:
            async with (
                open_socket(doomed, cookie[people.student.pk]) as sender,
                open_socket(doomed, cookie[people.teacher.pk]) as reader_on_a,
                open_socket(survivor, cookie[people.aide.pk]) as reader_on_b,
            ):
                room = await class_room(sender)
                await frames_until(reader_on_a, "ready")
                await frames_until(reader_on_b, "ready")
                first = await send(sender, room, "Before the crash")
                for reader in (reader_on_a, reader_on_b):
                    assert (await frames_until(reader, "message"))["message"]["seq"] == first["seq"]

                fatal = str(uuid.uuid4())
                body = f"The one that kills the server {moment}"
                await sender.send(send_frame(room, body, fatal))
                assert not [f for f in await until_closed(sender) if f.get("client_id") == fatal]
                assert doomed.process.wait(timeout=10) == -9  # killed, not stopped
                in_database = [row for row in (await saved_now(room)) if row[1] == fatal]
                assert len(in_database) == (1 if moment == DIE_AFTER_SAVE else 0)

                # Not acknowledged, so sent again through the other server: one message, whichever it was.
                async with open_socket(survivor, cookie[people.student.pk]) as again:
                    await frames_until(again, "ready")
                    resent = await send(again, room, body, fatal)
                    assert resent["seq"] == first["seq"] + 1
                    after = await send(again, room, "After the crash")

                # The reader on B: a live frame, or a gap in the sequence numbers filled by sync.
                seen = [first]
                while seen[-1]["seq"] != after["seq"]:
                    live = (await frames_until(reader_on_b, "message"))["message"]
                    if live["seq"] > seen[-1]["seq"] + 1:
                        seen += await sync(reader_on_b, room, seen[-1]["seq"])
                    else:
                        seen.append(live)
                assert [m["id"] for m in seen] == [first["id"], resent["id"], after["id"]]

            # The reader that was on A reconnects to B and replays what it missed, in order.
            async with open_socket(survivor, cookie[people.teacher.pk]) as reconnected:
                await frames_until(reconnected, "ready")
                missed = await sync(reconnected, room, first["seq"])
                assert [(m["id"], m["body"]) for m in missed] == [(resent["id"], body), (after["id"], after["body"])]
            return room

        room = asyncio.run(scenario())
        rows = saved(room)
        assert_gapless(rows)
        assert [row[2] for row in rows] == [
            "Before the crash",
            f"The one that kills the server {moment}",
            "After the crash",
        ]


def test_a_server_killed_under_load_keeps_every_acknowledged_message_once(
    tmp_path: Path, people: SchoolPeople, cookie: dict[int, str]
) -> None:
    """Three people send as fast as they may through server A, which is killed (SIGKILL) at a random
    moment. Every message a sender saw acknowledged is saved, once; the others, sent again with their
    client ids through server B, are saved once too; and a reader replays the whole room gaplessly."""
    per_sender = 15
    senders = [people.student, people.teacher, people.aide]
    with daphne_processes(tmp_path, 2) as [doomed, survivor]:

        async def scenario() -> tuple[int, dict[str, str], set[str]]:
            sent: dict[str, str] = {}  # client id -> body
            acked: set[str] = set()
            killed = asyncio.Event()
            kill_after = random.randint(1, per_sender * len(senders) - 5)

            async def keep_sending(user: Any, room: int) -> None:
                async with open_socket(doomed, cookie[user.pk]) as ws:
                    await frames_until(ws, "ready")
                    for n in range(per_sender):
                        client_id = str(uuid.uuid4())
                        sent[client_id] = f"{user.username} {n}"
                        try:
                            await ws.send(send_frame(room, sent[client_id], client_id))
                            answer = await answer_to(ws, client_id)
                        except ConnectionClosed:
                            return
                        assert answer["type"] == "ack", answer
                        acked.add(client_id)
                        if len(acked) == kill_after:
                            doomed.process.kill()
                            killed.set()

            async with open_socket(survivor, cookie[people.moderator.pk]) as probe:
                room = await class_room(probe)
            await asyncio.gather(*(keep_sending(user, room) for user in senders))
            assert killed.is_set()
            return room, sent, acked

        room, sent, acked = asyncio.run(scenario())
        doomed.process.wait(timeout=10)
        by_client_id = {row[1]: row for row in saved(room)}
        assert acked <= set(by_client_id), "an acknowledged message was lost"

        async def resend_unacknowledged() -> list[dict[str, Any]]:
            for user in senders:
                async with open_socket(survivor, cookie[user.pk]) as ws:
                    await frames_until(ws, "ready")
                    for client_id, body in sent.items():
                        if client_id not in acked and body.startswith(f"{user.username} "):
                            await send(ws, room, body, client_id)
            async with open_socket(survivor, cookie[people.moderator.pk]) as reader:
                await frames_until(reader, "ready")
                await look(reader, room)
                return await sync(reader, room, 0)

        replayed = asyncio.run(resend_unacknowledged())
        rows = saved(room)
        assert_gapless(rows)
        assert {row[1] for row in rows} == set(sent)  # everything sent, each once
        assert [(m["seq"], m["body"]) for m in replayed] == [(row[0], row[2]) for row in rows]


def test_the_database_away_for_seconds_gives_clear_errors_then_recovers(
    tmp_path: Path, people: SchoolPeople, cookie: dict[int, str]
) -> None:
    """The server's link to PostgreSQL is cut for a few seconds (every connection dropped, new ones
    refused: what a server sees when the database stops). A send meanwhile is answered with an
    `unavailable` error, never an acknowledgement, and nothing is saved; sockets stay open; the
    health check says so. Once the database is back, everything works again without restarting the
    server: the message sent again is saved once and delivered live."""
    link = database_proxy()
    try:
        url = the_database_url(link.port)
        with daphne_processes(tmp_path, 1, database_url=url, options=["--ping-interval", "300"]) as [server]:

            def healthy() -> bool:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as answer:
                        return bool(answer.status == 200)
                except urllib.error.HTTPError as error:
                    return error.code == 200

            async def scenario() -> int:
                async with (
                    open_socket(server, cookie[people.student.pk]) as sender,
                    open_socket(server, cookie[people.teacher.pk]) as reader,
                ):
                    room = await class_room(sender)
                    await frames_until(reader, "ready")
                    before = await send(sender, room, "Before the outage")
                    assert (await frames_until(reader, "message"))["message"]["id"] == before["id"]

                    await asyncio.to_thread(link.cut)
                    client_id = str(uuid.uuid4())
                    for _ in range(3):  # asked again and again: the same clear answer each time
                        await sender.send(send_frame(room, "During the outage", client_id))
                        answer = await answer_to(sender, client_id)
                        assert answer["type"] == "error", answer
                        assert answer["code"] == "unavailable"
                        assert "try again" in answer["detail"]
                    assert not await asyncio.to_thread(healthy)
                    await asyncio.sleep(3)
                    assert [row for row in await saved_now(room) if row[1] == client_id] == []

                    await asyncio.to_thread(link.restore)
                    during = await send(sender, room, "During the outage", client_id)
                    assert during["seq"] == before["seq"] + 1
                    assert (await frames_until(reader, "message"))["message"]["id"] == during["id"]
                    assert await asyncio.to_thread(healthy)
                # New sockets open again, too.
                async with open_socket(server, cookie[people.aide.pk]) as late:
                    assert await class_room(late) == room
                return room

            room = asyncio.run(scenario())
            rows = saved(room)
            assert_gapless(rows)
            assert [row[2] for row in rows] == ["Before the outage", "During the outage"]
            assert server.process.poll() is None  # the same process throughout
    finally:
        link.close()


def raw_websocket(server: Daphne, cookie: str) -> socket.socket:
    """A WebSocket opened by hand on a TCP socket with a tiny receive buffer, which the test then
    never reads: a client that has stopped reading (a frozen tab, a phone that went out of range)."""
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    tcp.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    tcp.sendall(
        (
            "GET /ws/ HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {server.origin}\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
    )
    assert tcp.recv(12) == b"HTTP/1.1 101"
    return tcp


def closed_by_server(tcp: socket.socket, within: float) -> bool:
    """Whether the server closes (or resets) the connection within `within` seconds, reading whatever
    it still holds for us meanwhile (it keeps sending pings to a connection it has not given up on)."""
    deadline = time.monotonic() + within
    try:
        while (left := deadline - time.monotonic()) > 0:
            tcp.settimeout(left)
            if not tcp.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        pass
    return False


def test_a_client_that_stops_reading_holds_up_nobody_and_is_dropped(
    tmp_path: Path, people: SchoolPeople, cookie: dict[int, str]
) -> None:
    """One member of a room stops reading while the room is busy. The others get every message, in
    order, while the server's buffer for the stuck one fills; the stuck one stops answering the
    server's pings, and the server drops it, which frees what it held for it (docs/security.md).
    The keep-alive is shortened here (a ping every second, two seconds to answer) to keep the test short."""
    senders = [people.student, people.teacher, people.aide]
    with daphne_processes(tmp_path, 1, options=["--ping-interval", "1", "--ping-timeout", "2"]) as [server]:
        stuck = raw_websocket(server, session_cookie(people.moderator))
        try:

            async def busy_room() -> list[int]:
                async with open_socket(server, cookie[people.safeguarding_lead.pk]) as reader:
                    room = await class_room(reader)
                    await look(reader, room)
                    bodies = {}

                    async def burst(user: Any) -> None:
                        async with open_socket(server, cookie[user.pk]) as ws:
                            await frames_until(ws, "ready")
                            for n in range(15):  # within the rate limit's burst
                                message = await send(ws, room, f"{user.username} {n} " + "x" * 3900)
                                bodies[message["seq"]] = message["body"]

                    await asyncio.gather(*(burst(user) for user in senders))
                    heard: list[int] = []
                    while len(heard) < len(bodies):
                        heard.append((await frames_until(reader, "message", timeout=10))["message"]["seq"])
                    return heard

            heard = asyncio.run(busy_room())
            assert heard == sorted(heard)
            assert len(heard) == 45
            assert closed_by_server(stuck, within=15), "the server kept a client that stopped reading"
        finally:
            stuck.close()
        assert server.process.poll() is None


def test_a_frame_over_the_size_limit_is_refused_by_the_server(
    tmp_path: Path, people: SchoolPeople, cookie: dict[int, str]
) -> None:
    """daphne runs with explicit WebSocket limits (`commonroom.serve`): a frame over 64 KiB closes the
    socket with 1009 (message too big) before the application reads it; the server carries on."""
    with daphne_processes(tmp_path, 1) as [server]:

        async def scenario() -> None:
            async with open_socket(server, cookie[people.student.pk]) as ws:
                room = await class_room(ws)
                await ws.send(send_frame(room, "x" * 70_000, str(uuid.uuid4())))
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 10)
                # 1009 (message too big), unless the close frame was lost as the server dropped the connection
                assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
            async with open_socket(server, cookie[people.student.pk]) as ws:
                room = await class_room(ws)
                await ws.send(send_frame(room, "x" * 20_000, str(uuid.uuid4())))
                error = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert error["code"] == "frame_too_large"  # under daphne's limit, over the application's

        asyncio.run(scenario())
        assert server.process.poll() is None


def test_a_flood_is_cut_off_and_the_room_carries_on(
    tmp_path: Path, people: SchoolPeople, cookie: dict[int, str]
) -> None:
    """One socket floods its server with frames as fast as it can write them, on several sockets at
    once. Each is refused (`rate_limited`) and then closed (4429), while a conversation on the same
    server goes on: every message of it is delivered, in order. (How much the flood costs the
    conversation's latency is measured in the benchmark, not asserted here.)"""
    from messaging.consumers import CLOSE_FLOODING

    with daphne_processes(tmp_path, 1) as [server]:

        async def scenario() -> None:
            async def flood() -> int | None:
                async with open_socket(server, cookie[people.aide.pk]) as ws:
                    room = await class_room(ws)
                    junk = [send_frame(room, f"spam {n}", str(uuid.uuid4())) for n in range(200)]
                    try:
                        for frame in junk:
                            await ws.send(frame)
                        await until_closed(ws)
                    except ConnectionClosed:
                        pass
                    return int(ws.close_code) if ws.close_code is not None else None

            async def conversation() -> list[int]:
                async with (
                    open_socket(server, cookie[people.student.pk]) as student,
                    open_socket(server, cookie[people.teacher.pk]) as teacher,
                ):
                    room = await class_room(student)
                    await frames_until(teacher, "ready")
                    seqs = []
                    for n in range(10):
                        sent = await send(student, room, f"Still talking {n}")
                        while True:
                            heard = (await frames_until(teacher, "message"))["message"]
                            if heard["author"]["id"] == people.student.pk:
                                break
                        assert heard["id"] == sent["id"]
                        seqs.append(heard["seq"])
                    return seqs

            floods = [asyncio.ensure_future(flood()) for _ in range(3)]
            seqs = await conversation()
            codes = [await flooded for flooded in floods]
            assert seqs == sorted(seqs)
            assert codes == [CLOSE_FLOODING] * 3

        asyncio.run(scenario())
        assert server.process.poll() is None
