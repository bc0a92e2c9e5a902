"""End to end: two real daphne processes sharing Redis and PostgreSQL, and real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from tests.conftest import SchoolPeople, make_school

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def daphne_servers(tmp_path: Path, count: int = 2, redis_url: str | None = None) -> Iterator[list[int]]:
    """`count` daphne processes on loopback, on the test database and Redis (the test one unless
    `redis_url` names another); stopped afterwards."""
    database = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "commonroom.settings",
        "DEBUG": "0",
        "SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": f"postgres://{database['USER']}:{database['PASSWORD'] or ''}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "REDIS_URL": redis_url or settings.REDIS_URL or "",
        "CHANNEL_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "STATIC_ROOT": str(tmp_path / "static"),
        "SECURE_COOKIES": "0",  # plain HTTP on loopback
    }
    # As in a deployment, static files are collected first (DEBUG is off).
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True, timeout=120
    )
    ports = [free_port() for _ in range(count)]
    logs = [(tmp_path / f"daphne-{port}.log").open("wb") for port in ports]  # read them when a test fails
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "commonroom.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        for port, log in zip(ports, logs, strict=True)
    ]
    try:
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "daphne did not start"
                time.sleep(0.2)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        for log in logs:
            log.close()
        # The servers' database sessions end a moment after the processes do; the test database can
        # only be dropped once they have.
        deadline = time.monotonic() + 10
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                if cursor.fetchone()[0] == 0:
                    break
                time.sleep(0.1)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[int]]:
    """Two daphne processes on loopback, on the test database and the test Redis."""
    with daphne_servers(tmp_path) as ports:
        yield ports


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def frames_until(ws: ClientConnection, kind: str, timeout: float = 10) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["type"] == kind:
            return frame


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


@contextmanager
def private_redis() -> Iterator[tuple[str, Any]]:
    """A Redis server of the test's own on loopback (so that stopping it touches nobody else's), and
    functions that stop it and start it again on the same port."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    state = {"process": subprocess.Popen(command, stdout=subprocess.DEVNULL)}

    def wait_until_up() -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                assert time.monotonic() < deadline, "redis did not start"
                time.sleep(0.1)

    def stop() -> None:
        state["process"].terminate()
        state["process"].wait(timeout=10)

    def start() -> None:
        state["process"] = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_until_up()

    wait_until_up()
    try:
        yield f"redis://127.0.0.1:{port}/0", (stop, start)
    finally:
        state["process"].terminate()
        state["process"].wait(timeout=10)


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
