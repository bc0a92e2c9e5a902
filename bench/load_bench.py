"""Load benchmark: Commonroom against two baselines, with real WebSocket clients, in one run.

Creates a PostgreSQL database of its own (dropped afterwards), migrates it and seeds one school
(2,000 students in cohorts of about 300, classes of 30, a teacher per class, two heads of year per
cohort) with a real session for each person. Then it starts, on 127.0.0.1 only:

- Commonroom: daphne serving `commonroom.asgi` with the production settings (DEBUG off), PostgreSQL,
  the Redis channel layer, the audit log and screening all on;
- B0: `bench/baseline_ws.py`, a bare `websockets` server relaying to rooms in memory;
- B1: `bench/baseline_channels.py` under daphne, the plain Channels relay over channels_redis;

and runs each scenario on each system in turn (Commonroom, B0, B1), with one load generator: asyncio
`websockets` clients in this process, so senders and receivers share one clock; every message carries
its send time (and its sender and number) in its text. Scenarios:

- `class30`, `cohort300`, `classes10x30`: a ramp of send rates per room (1, 2, 5, 7, 10, 20, 35, 50,
  70, 100, 200 a second) that stops at the first step that breaks the target: delivery to the room's last member
  at p99 <= 250 ms, and nothing lost, duplicated, out of order or refused. The knee is the last rate
  that met it;
- `burst`: all 30 students of a class room send within 2 seconds, three times;
- `storm`: 300 sockets connect within 1 second (time to the `ready` frame);
- `memory`: RSS per connection at 300 and 2,000 idle connections (5,000 in the long mode), and RSS
  across connect/disconnect cycles;
- `soak`: 2,000 connected students each sending about one message every 350 s, with a class burst
  every 15 s, for 1 minute (20 s for the baselines; 10 minutes in the long mode): p99 and RSS per
  10-second window;
- `two_processes` (Commonroom only): the `classes10x30` ramp with clients spread over two daphne
  processes sharing Redis and PostgreSQL.

CPU is read from /proc for the server process and for PostgreSQL and Redis, memory as RSS, database
time from pg_stat_database. Prints a table; writes bench/results/load.json and load.png.

    .venv/bin/python bench/load_bench.py              # the default mode, under 10 minutes
    .venv/bin/python bench/load_bench.py --long       # longer steps, a 10-minute soak, 5,000 sockets
    .venv/bin/python bench/load_bench.py --systems commonroom --scenarios class30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException
from websockets.typing import Origin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.scratch import scratch_database  # noqa: E402  (after the path)

RESULTS = ROOT / "bench" / "results"
TARGET_MS = 250.0
HOST = "127.0.0.1"
ORIGIN = f"http://{HOST}"
SYSTEMS = ("commonroom", "b0", "b1")
SCENARIOS = ("class30", "cohort300", "classes10x30", "burst", "storm", "flood", "memory", "soak", "two_processes")
RATES = (1, 2, 5, 7, 10, 20, 35, 50, 70, 100, 200)
COHORT = 300
CLASS = 30
TICK = os.sysconf("SC_CLK_TCK")
SENTENCES = (
    "Is the homework on page twelve or thirteen?",
    "Can someone explain question four again please",
    "We have the science test tomorrow after lunch",
    "Thanks, that makes sense now",
    "Does anyone have the notes from today's lesson?",
    "The essay is due on Friday, not Monday",
)
LETTERS = "bcdfghjklmnpqrstvwxz"  # numbers are written in letters: digits would look like a phone number


def encode(number: int) -> str:
    out = ""
    while True:
        number, digit = divmod(number, len(LETTERS))
        out = LETTERS[digit] + out
        if not number:
            return out


def decode(text: str) -> int:
    number = 0
    for letter in text:
        number = number * len(LETTERS) + LETTERS.index(letter)
    return number


# -- the school ------------------------------------------------------------------------------------


@dataclass
class Layout:
    """Who is in which room, and each person's session."""

    sessions: dict[int, str]
    class_rooms: list[dict[str, Any]]  # {"id", "cohort", "students", "teachers"}
    cohort_rooms: list[dict[str, Any]]  # {"id", "students", "staff"}


def seed(students: int) -> Layout:
    from datetime import date, timedelta

    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.base import VALID_KEY_CHARS
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.db import transaction
    from django.utils import timezone
    from django.utils.crypto import get_random_string
    from django_scopes import scopes_disabled

    from classes.models import (
        AcademicSession,
        Cohort,
        CohortMembership,
        CohortStaff,
        Enrollment,
        School,
        SchoolClass,
        User,
    )
    from messaging.models import Room
    from messaging.rooms import sync_rooms

    cohorts = -(-students // COHORT)
    with scopes_disabled(), transaction.atomic():
        school = School.objects.create(
            name="Load School", sourced_id="load-school", time_zone="Europe/London", class_rooms_start_open=True
        )
        year = AcademicSession.objects.create(
            school=school,
            sourced_id="load-year",
            title="2026-2027",
            kind=AcademicSession.Kind.SCHOOL_YEAR,
            start_date=date(2026, 9, 1),
            end_date=date(2027, 7, 31),
            school_year=2027,
        )
        groups = Cohort.objects.bulk_create(Cohort(school=school, graduation_year=2027 + n) for n in range(cohorts))
        pupils = User.objects.bulk_create(
            User(username=f"load.s{n}", school=school, role=User.Role.STUDENT, given_name=f"S{n}", family_name="Load")
            for n in range(students)
        )
        classes_needed = -(-students // CLASS)
        teachers = User.objects.bulk_create(
            User(username=f"load.t{n}", school=school, role=User.Role.TEACHER, given_name=f"T{n}", family_name="Load")
            for n in range(classes_needed)
        )
        classes = SchoolClass.objects.bulk_create(
            SchoolClass(school=school, title=f"Class {n}", code=f"C{n}") for n in range(classes_needed)
        )
        for school_class in classes:
            school_class.terms.add(year)
        CohortMembership.objects.bulk_create(
            CohortMembership(school=school, cohort=groups[n // COHORT], user=pupil) for n, pupil in enumerate(pupils)
        )
        enrollments = [
            Enrollment(school=school, school_class=classes[n // CLASS], user=pupil, role=Enrollment.Role.STUDENT)
            for n, pupil in enumerate(pupils)
        ]
        enrollments += [
            Enrollment(school=school, school_class=classes[n], user=teacher, role=Enrollment.Role.TEACHER)
            for n, teacher in enumerate(teachers)
        ]
        Enrollment.objects.bulk_create(enrollments)
        heads = {}
        for n, cohort in enumerate(groups):  # two heads of year: the teachers of its first two classes
            first = n * COHORT // CLASS
            heads[cohort.pk] = [teachers[first], teachers[min(first + 1, len(teachers) - 1)]]
            CohortStaff.objects.bulk_create(CohortStaff(school=school, cohort=cohort, user=t) for t in heads[cohort.pk])
        sync_rooms([school.pk])
        rooms = {
            ("class", room.school_class_id) if room.school_class_id else ("cohort", room.cohort_id): room.pk
            for room in Room.objects.filter(school=school)
        }
        people = [*pupils, *teachers]
        expiry = timezone.now() + timedelta(days=1)
        store = SessionStore()
        sessions: dict[int, str] = {}
        rows = []
        for person in people:
            key = get_random_string(32, VALID_KEY_CHARS)
            data = {
                SESSION_KEY: str(person.pk),
                BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                HASH_SESSION_KEY: person.get_session_auth_hash(),
            }
            rows.append(Session(session_key=key, session_data=store.encode(data), expire_date=expiry))
            sessions[person.pk] = key
        Session.objects.bulk_create(rows, batch_size=2000)
    class_rooms = [
        {
            "id": rooms[("class", school_class.pk)],
            "cohort": n * CLASS // COHORT,
            "students": [pupil.pk for pupil in pupils[n * CLASS : (n + 1) * CLASS]],
            "teachers": [teachers[n].pk],
        }
        for n, school_class in enumerate(classes)
    ]
    cohort_rooms = [
        {
            "id": rooms[("cohort", cohort.pk)],
            "students": [pupil.pk for pupil in pupils[n * COHORT : (n + 1) * COHORT]],
            "staff": [t.pk for t in heads[cohort.pk]],
        }
        for n, cohort in enumerate(groups)
    ]
    return Layout(sessions, class_rooms, cohort_rooms)


# -- the servers -----------------------------------------------------------------------------------


def _more_files() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Server:
    system: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid


def start(system: str, port: int, env: dict[str, str]) -> Server:
    python = str(Path(sys.executable))
    daphne = str(Path(sys.executable).parent / "daphne")
    if system == "b0":
        command = [python, str(ROOT / "bench" / "baseline_ws.py"), "--port", str(port)]
    elif system == "b1":
        command = [daphne, "-b", HOST, "-p", str(port), "bench.baseline_channels:application"]
    else:
        command = [python, "-m", "commonroom.serve", "-b", HOST, "-p", str(port)]
    log = open(RESULTS / f"load-{system}-{port}.log", "wb")  # noqa: SIM115  (closed with the process)
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )  # inherits _more_files()
    server = Server(system, port, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{system} stopped at start; see {log.name}")
        with contextlib.suppress(OSError):
            import socket

            with socket.create_connection((HOST, port), timeout=0.2):
                return server
        time.sleep(0.2)
    raise RuntimeError(f"{system} did not start listening on port {port}")


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
    return found


# -- the clients -----------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one step sent and what arrived where."""

    sent: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)  # (sender, n) -> (t_ns, room)
    expected: dict[int, int] = field(default_factory=dict)  # room -> recipients per message
    arrivals: dict[tuple[int, int], list[int]] = field(default_factory=lambda: defaultdict(list))  # -> ns latencies
    seen: set[tuple[int, int, int]] = field(default_factory=set)  # (receiver, sender, n)
    last_n: dict[tuple[int, int], int] = field(default_factory=dict)  # (receiver, sender) -> n
    duplicated: int = 0
    out_of_order: int = 0
    errors: list[str] = field(default_factory=list)
    delivered: int = 0

    def outstanding(self) -> int:
        return sum(self.expected[room] for _, room in self.sent.values()) - self.delivered


class Client:
    def __init__(self, bench: Bench, user: int, rooms: list[int]) -> None:
        self.bench, self.user, self.rooms = bench, user, rooms
        self.socket: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.counter = 0

    async def open(self, port: int) -> float:
        """Connect; the seconds until the `ready` frame."""
        started = time.perf_counter()
        if self.bench.system == "commonroom":
            url = f"ws://{HOST}:{port}/ws/"
            headers = {"Cookie": f"sessionid={self.bench.layout.sessions[self.user]}"}
        else:
            url = f"ws://{HOST}:{port}/ws/?user={self.user}&rooms={','.join(map(str, self.rooms))}"
            headers = {}
        self.socket = await connect(
            url,
            origin=Origin(ORIGIN),
            additional_headers=headers,
            compression=None,
            max_size=2**20,
            open_timeout=60,
            ping_interval=None,  # as a browser: it answers the server's pings and sends none of its own
        )
        ready = orjson.loads(await self.socket.recv())
        if ready.get("type") != "ready":
            raise RuntimeError(f"expected ready, got {ready}")
        took = time.perf_counter() - started
        self.reader = asyncio.create_task(self.read())
        return took

    async def read(self) -> None:
        if self.socket is None:
            return
        with contextlib.suppress(Exception):
            async for raw in self.socket:
                self.bench.arrived(self.user, raw)

    async def send(self, room: int) -> None:
        if self.socket is None:
            raise RuntimeError("not connected")
        self.counter += 1
        n = self.counter
        now = time.monotonic_ns()
        self.bench.tally.sent[(self.user, n)] = (now, room)
        body = f"{random.choice(SENTENCES)} ~{encode(self.user)}.{encode(n)}.{encode(now // 1000)}"
        frame = {"type": "send", "room": room, "client_id": str(uuid.uuid4()), "body": body}
        await self.socket.send(orjson.dumps(frame).decode())

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
        if self.reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


class Bench:
    def __init__(  # noqa: PLR0917
        self, layout: Layout, system: str, servers: list[Server], infra: list[int], database: str, postgres: str
    ) -> None:
        self.layout, self.system, self.servers, self.infra = layout, system, servers, infra
        self.database, self.postgres = database, postgres
        self.tally = Tally()
        self.clients: list[Client] = []

    def arrived(self, receiver: int, raw: str | bytes) -> None:
        at = time.monotonic_ns()
        frame = orjson.loads(raw)
        kind = frame.get("type")
        if kind == "error":
            self.tally.errors.append(frame.get("code", "?"))
            return
        if kind != "message":
            return
        body = frame["message"].get("body") or ""
        marker = body.rpartition(" ~")[2].split(".")
        if len(marker) != 3:
            return
        sender, n, sent_us = decode(marker[0]), decode(marker[1]), decode(marker[2])
        tally = self.tally
        if (sender, n) not in tally.sent:
            return  # from an earlier step
        if (receiver, sender, n) in tally.seen:
            tally.duplicated += 1
            return
        tally.seen.add((receiver, sender, n))
        if tally.last_n.get((receiver, sender), 0) > n:
            tally.out_of_order += 1
        tally.last_n[(receiver, sender)] = n
        tally.arrivals[(sender, n)].append(at - sent_us * 1000)
        tally.delivered += 1

    # -- connecting ------------------------------------------------------------------------------

    def port_for(self, index: int) -> int:
        return self.servers[index % len(self.servers)].port

    async def connect(self, people: list[tuple[int, list[int]]], *, at_once: int = 50) -> list[Client]:
        gate = asyncio.Semaphore(at_once)
        clients = [Client(self, user, rooms) for user, rooms in people]

        async def one(index: int, client: Client) -> None:
            async with gate:
                await client.open(self.port_for(len(self.clients) + index))

        await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
        self.clients += clients
        return clients

    async def disconnect(self, clients: list[Client] | None = None) -> None:
        clients = self.clients if clients is None else clients
        await asyncio.gather(*(client.close() for client in clients))
        self.clients = [c for c in self.clients if c not in clients]

    # -- measuring -------------------------------------------------------------------------------

    def server_pids(self) -> list[int]:
        return [server.pid for server in self.servers]

    def db_active_ms(self) -> float:
        if self.system != "commonroom":
            return 0.0
        import psycopg

        with psycopg.connect(f"{self.postgres}/postgres", autocommit=True) as connection:
            row = connection.execute(
                "SELECT active_time FROM pg_stat_database WHERE datname = %s", [self.database]
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else 0.0

    async def step(self, rooms: list[tuple[int, list[Client]]], rate: float, seconds: float) -> dict[str, Any]:
        """Each room gets `rate` messages a second for `seconds`, from its members in turn; then wait
        for every delivery (up to 5 s) and measure."""
        self.tally = Tally()
        members: dict[int, int] = defaultdict(int)
        for client in self.clients:
            for room in client.rooms:
                members[room] += 1
        self.tally.expected = dict(members)
        cpu0, infra0, db0 = cpu_ticks(self.server_pids()), cpu_ticks(self.infra), self.db_active_ms()
        own0 = time.process_time()
        started = time.monotonic()

        async def pace(place: int, room: int, senders: list[Client]) -> None:
            # Rooms are out of step with each other (as classes are): room k starts k/len(rooms) of an
            # interval late, so ten rooms at 1 a second send ten messages a second, not ten at once.
            count = max(1, round(rate * seconds))
            offset = place / len(rooms) / rate
            for i in range(count):
                delay = started + offset + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await senders[i % len(senders)].send(room)

        await asyncio.gather(*(pace(place, room, senders) for place, (room, senders) in enumerate(rooms)))
        sending = time.monotonic() - started
        deadline = time.monotonic() + 5
        while self.tally.outstanding() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # let late duplicates show
        elapsed = time.monotonic() - started
        return self.measure(rate, sending, elapsed, cpu0, infra0, db0, own0)

    def measure(  # noqa: PLR0917
        self, rate: float, sending: float, elapsed: float, cpu0: int, infra0: int, db0: float, own0: float
    ) -> dict[str, Any]:
        tally = self.tally
        cpu_ms = (cpu_ticks(self.server_pids()) - cpu0) * 1000 / TICK
        infra_ms = (cpu_ticks(self.infra) - infra0) * 1000 / TICK
        db_ms = self.db_active_ms() - db0
        last, each = [], []
        lost = 0
        for key, (_, room) in tally.sent.items():
            got = tally.arrivals.get(key, [])
            lost += tally.expected[room] - len(got)
            if got:
                each += got
                if len(got) == tally.expected[room]:
                    last.append(max(got))
        messages = len(tally.sent)
        last_ms = percentiles(last)
        result: dict[str, Any] = {
            "rate": rate,
            "messages": messages,
            "deliveries": tally.delivered,
            "messages_per_s": round(messages / sending, 1) if sending else 0,
            "deliveries_per_s": round(tally.delivered / sending, 1) if sending else 0,
            "last_member_ms": last_ms,
            "per_recipient_ms": percentiles(each),
            "lost": lost,
            "duplicated": tally.duplicated,
            "out_of_order": tally.out_of_order,
            "errors": len(tally.errors),
            "error_codes": sorted(set(tally.errors)),
            "server_cpu_ms_per_message": round(cpu_ms / messages, 3) if messages else None,
            "server_cpu_ms_per_delivery": round(cpu_ms / tally.delivered, 4) if tally.delivered else None,
            "redis_postgres_cpu_ms_per_message": round(infra_ms / messages, 3) if messages else None,
            "db_ms_per_message": round(db_ms / messages, 3) if messages and self.system == "commonroom" else None,
            "generator_cpu_percent": round(100 * (time.process_time() - own0) / elapsed, 1),
        }
        result["ok"] = bool(
            last
            and last_ms["p99"] <= TARGET_MS
            and not (lost or tally.duplicated or tally.out_of_order or tally.errors)
        )
        return result


def percentiles(values: list[int]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6, 1)

    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1] / 1e6, 1)}


# -- the scenarios ---------------------------------------------------------------------------------


def class_people(room: dict[str, Any], layout: Layout) -> list[tuple[int, list[int]]]:
    """A class room's students and teacher, each subscribed (for the baselines) to the rooms
    Commonroom gives them: their class room and their cohort's room (heads of year only)."""
    cohort_room = layout.cohort_rooms[room["cohort"]]["id"]
    people = [(student, [room["id"], cohort_room]) for student in room["students"]]
    for teacher in room["teachers"]:
        staff = teacher in layout.cohort_rooms[room["cohort"]]["staff"]
        people.append((teacher, [room["id"], cohort_room] if staff else [room["id"]]))
    return people


def cohort_people(number: int, layout: Layout) -> list[tuple[int, list[int]]]:
    cohort = layout.cohort_rooms[number]
    people: dict[int, list[int]] = {}
    for room in layout.class_rooms:
        if room["cohort"] == number:
            for user, rooms in class_people(room, layout):
                people[user] = rooms
    for user in cohort["staff"]:
        people.setdefault(user, [cohort["id"]])
    return list(people.items())


async def ramp(
    bench: Bench, rooms: list[tuple[int, list[Client]]], seconds: float, rates: tuple[int, ...] = RATES
) -> dict[str, Any]:
    steps = []
    for rate in rates:
        result = await bench.step(rooms, rate, seconds)
        steps.append(result)
        show_step(bench.system, result)
        if not result["ok"]:
            break
    good = [step["rate"] for step in steps if step["ok"]]
    return {"knee": good[-1] if good and steps[len(good) - 1]["ok"] else 0, "steps": steps}


def show_step(system: str, step: dict[str, Any]) -> None:
    last = step["last_member_ms"]
    print(
        f"    {system:<10} {step['rate']:>5}/s  last member p50 {last['p50']:>7} p99 {last['p99']:>7} ms"
        f"  lost {step['lost']} dup {step['duplicated']} order {step['out_of_order']} errors {step['errors']}"
        f"  cpu/delivery {step['server_cpu_ms_per_delivery']} ms  generator {step['generator_cpu_percent']}%",
        flush=True,
    )


def senders_of(clients: list[Client], room: int, layout: Layout) -> list[Client]:
    students = {s for r in layout.class_rooms for s in r["students"]}
    return [c for c in clients if room in c.rooms and c.user in students]


async def scenario_class30(bench: Bench, seconds: float) -> dict[str, Any]:
    room = bench.layout.class_rooms[0]
    clients = await bench.connect(class_people(room, bench.layout))
    try:
        return await ramp(bench, [(room["id"], senders_of(clients, room["id"], bench.layout))], seconds)
    finally:
        await bench.disconnect()


async def scenario_cohort300(bench: Bench, seconds: float) -> dict[str, Any]:
    cohort = bench.layout.cohort_rooms[0]
    clients = await bench.connect(cohort_people(0, bench.layout))
    try:
        return await ramp(bench, [(cohort["id"], senders_of(clients, cohort["id"], bench.layout))], seconds)
    finally:
        await bench.disconnect()


async def scenario_classes10x30(bench: Bench, seconds: float) -> dict[str, Any]:
    rooms = [room for room in bench.layout.class_rooms if room["cohort"] == 0][:10]
    people: dict[int, list[int]] = {}
    for room in rooms:
        people.update(class_people(room, bench.layout))
    clients = await bench.connect(list(people.items()))
    try:
        return await ramp(bench, [(r["id"], senders_of(clients, r["id"], bench.layout)) for r in rooms], seconds)
    finally:
        await bench.disconnect()


async def scenario_burst(bench: Bench, seconds: float) -> dict[str, Any]:
    """All 30 students of a class room send within 2 seconds (15 a second), three times."""
    room = bench.layout.class_rooms[0]
    clients = await bench.connect(class_people(room, bench.layout))
    try:
        bursts = []
        for _ in range(3):
            result = await bench.step([(room["id"], senders_of(clients, room["id"], bench.layout))], CLASS / 2, 2)
            show_step(bench.system, result)
            bursts.append(result)
        return {"bursts": bursts, "ok": all(b["ok"] for b in bursts)}
    finally:
        await bench.disconnect()


async def scenario_storm(bench: Bench, seconds: float) -> dict[str, Any]:
    """300 sockets connect within one second: the time to `ready` of each."""
    people = cohort_people(1 if len(bench.layout.cohort_rooms) > 1 else 0, bench.layout)[:COHORT]
    clients = [Client(bench, user, rooms) for user, rooms in people]
    started = time.monotonic()

    async def one(index: int, client: Client) -> float | None:
        await asyncio.sleep(max(0.0, started + index / len(clients) - time.monotonic()))
        try:
            return await client.open(bench.port_for(index))
        except (OSError, RuntimeError, TimeoutError, WebSocketException):
            return None

    took = await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
    bench.clients += clients
    await bench.disconnect()
    ready = [int(t * 1e9) for t in took if t is not None]
    result = {"sockets": len(clients), "failed": len(clients) - len(ready), "to_ready_ms": percentiles(ready)}
    took_ms, failed = result["to_ready_ms"], result["failed"]
    print(f"    {bench.system:<10} storm of {len(clients)}: to ready {took_ms}, failed {failed}", flush=True)
    return result


async def scenario_flood(bench: Bench, seconds: float) -> dict[str, Any]:
    """A class room talks at 10 messages a second, first in peace, then while three students of
    another class flood the same server: each writes `send` frames as fast as it can and, when the
    server closes it for flooding, connects again at once. The room's latency in both."""
    room, other = bench.layout.class_rooms[0], bench.layout.class_rooms[1]
    clients = await bench.connect(class_people(room, bench.layout))
    senders = senders_of(clients, room["id"], bench.layout)
    attackers = [user for user, _ in class_people(other, bench.layout) if user in other["students"]][:3]
    rate = 10
    counts = {"frames": 0, "closed_for_flooding": 0}
    stop = asyncio.Event()

    async def flood(user: int) -> None:
        url, headers = f"ws://{HOST}:{bench.port_for(0)}/ws/", {"Cookie": f"sessionid={bench.layout.sessions[user]}"}
        while not stop.is_set():
            try:
                async with connect(url, origin=Origin(ORIGIN), additional_headers=headers, ping_interval=None) as ws:
                    drain = asyncio.create_task(ws.wait_closed())  # reads (and drops) what comes back
                    await ws.recv()  # ready
                    while not stop.is_set():
                        frame = {"type": "send", "room": other["id"], "client_id": str(uuid.uuid4()), "body": "spam"}
                        await ws.send(orjson.dumps(frame).decode())
                        counts["frames"] += 1
                        await asyncio.sleep(0)
                    drain.cancel()
            except WebSocketException as closed:
                code = getattr(getattr(closed, "rcvd", None), "code", None)
                counts["closed_for_flooding"] += code == 4429

    try:
        peaceful = await bench.step([(room["id"], senders)], rate, seconds * 2)
        show_step(bench.system, peaceful)
        flooding = [asyncio.create_task(flood(user)) for user in attackers]
        try:
            flooded = await bench.step([(room["id"], senders)], rate, seconds * 2)
        finally:
            stop.set()
            await asyncio.gather(*flooding, return_exceptions=True)
        show_step(bench.system, flooded)
        print(f"    {bench.system:<10} flood: {counts['frames']} frames, closed {counts['closed_for_flooding']} times")
        return {"peaceful": peaceful, "flooded": flooded, **counts, "ok": flooded["ok"]}
    finally:
        await bench.disconnect()


async def settle_rss(pid: int) -> int:
    await asyncio.sleep(1)
    return rss_kib(pid)


async def scenario_memory(bench: Bench, seconds: float, sizes: tuple[int, ...]) -> dict[str, Any]:
    pid = bench.servers[0].pid
    everyone = all_people(bench.layout)
    result: dict[str, Any] = {"per_connection_kib": {}}
    zero = result["rss_kib_at_zero"] = await settle_rss(pid)  # the fresh process, before any socket
    for size in sizes:
        # Beyond the seeded people, the same people open more sockets (more tabs, more devices).
        await bench.connect([everyone[i % len(everyone)] for i in range(size)], at_once=100)
        during = await settle_rss(pid)
        await bench.disconnect()
        after = await settle_rss(pid)
        result["per_connection_kib"][size] = round((during - zero) / size, 1)
        result[f"rss_kib_{size}"] = {"connected": during, "after": after}
        print(f"    {bench.system:<10} {size} sockets: {result['per_connection_kib'][size]} KiB each", flush=True)
    cycles = []
    for _ in range(3):
        await bench.connect(everyone[:COHORT], at_once=100)
        await bench.disconnect()
        cycles.append(await settle_rss(pid))
    result["rss_kib_after_cycles"] = cycles
    result["growth_over_cycles_kib"] = cycles[-1] - cycles[0]
    print(f"    {bench.system:<10} RSS after connect/disconnect cycles of {COHORT}: {cycles} KiB", flush=True)
    return result


def all_people(layout: Layout) -> list[tuple[int, list[int]]]:
    people: dict[int, list[int]] = {}
    for number in range(len(layout.cohort_rooms)):
        people.update(cohort_people(number, layout))
    return list(people.items())


async def scenario_soak(bench: Bench, seconds: float) -> dict[str, Any]:
    """Everyone connected; each student sends about once every 350 s to their class room, and every
    15 s one class's 30 students all send within 2 s. p99 and RSS per 10-second window."""
    layout = bench.layout
    clients = await bench.connect(all_people(layout), at_once=100)
    by_user = {client.user: client for client in clients}
    room_of = {student: room["id"] for room in layout.class_rooms for student in room["students"]}
    students = list(room_of)
    members: dict[int, int] = defaultdict(int)
    for client in clients:
        for room in client.rooms:
            members[room] += 1
    windows = []
    rng = random.Random(7)

    async def burst(room: dict[str, Any]) -> None:
        for student in room["students"]:
            await by_user[student].send(room["id"])
            await asyncio.sleep(2 / len(room["students"]))

    started = time.monotonic()
    next_burst = started + 5
    pid = bench.servers[0].pid
    while time.monotonic() - started < seconds:
        bench.tally = Tally(expected=dict(members))
        cpu0, infra0, db0 = cpu_ticks(bench.server_pids()), cpu_ticks(bench.infra), bench.db_active_ms()
        own0 = time.process_time()
        window_start = time.monotonic()
        sends: list[asyncio.Task[None]] = []
        while time.monotonic() - window_start < 10:
            # Poisson arrivals at len(students)/350 a second overall.
            await asyncio.sleep(rng.expovariate(len(students) / 350))
            student = rng.choice(students)
            sends.append(asyncio.create_task(by_user[student].send(room_of[student])))
            if time.monotonic() >= next_burst:
                next_burst += 15
                sends.append(asyncio.create_task(burst(rng.choice(layout.class_rooms))))
        await asyncio.gather(*sends)
        deadline = time.monotonic() + 5
        while bench.tally.outstanding() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        took = time.monotonic() - window_start
        window = bench.measure(0, took, took, cpu0, infra0, db0, own0)
        window["rss_kib"] = rss_kib(pid)
        windows.append(window)
        last = window["last_member_ms"]
        print(
            f"    {bench.system:<10} soak window {len(windows)}: {window['messages']} messages, last member p99 "
            f"{last['p99']} ms, lost {window['lost']}, RSS {window['rss_kib']} KiB",
            flush=True,
        )
    await bench.disconnect()
    after_warmup = [w["rss_kib"] for w in windows[1:]] or [windows[0]["rss_kib"]]
    return {
        "connected": len(clients),
        "windows": windows,
        "worst_p99_ms": max(w["last_member_ms"]["p99"] for w in windows),
        "lost": sum(w["lost"] for w in windows),
        "rss_growth_after_warmup_kib": after_warmup[-1] - after_warmup[0],
        "ok": all(w["ok"] for w in windows),
    }


# -- the run ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", action="store_true", help="longer steps, a 10-minute soak, 5,000 sockets")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="server URL (no database)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--profile", action="store_true", help="sample Commonroom's server with py-spy (bench/results/profile.txt)"
    )
    parser.add_argument("--report", action="store_true", help="print the table and plot of the last run, and stop")
    args = parser.parse_args()
    if args.report:
        report(json.loads((RESULTS / ("load-long.json" if args.long else "load.json")).read_text()), args)
        return
    _more_files()
    with scratch_database(args.postgres, "commonroom_load_bench", keep=args.keep) as database_url:
        prefix = f"loadbench{os.getpid()}"
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": args.redis,
            "CHANNEL_PREFIX": prefix,
            "SECRET_KEY": "benchmark-only",
            "DEBUG": "0",
            "ALLOWED_HOSTS": HOST,
            "SECURE_COOKIES": "false",  # plain HTTP on loopback: pages (and sockets) come from http://
            "DJANGO_SETTINGS_MODULE": "commonroom.settings",
            "PYTHONPATH": str(ROOT),
        }
        os.environ.update({k: env[k] for k in ("SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DJANGO_SETTINGS_MODULE")})
        os.environ.pop("REDIS_URL", None)
        servers: list[Server] = []
        try:
            import django

            django.setup()
            from django.core.management import call_command
            from django.db import connections

            call_command("migrate", verbosity=0)
            students = 5000 if args.long else 2000
            started = time.perf_counter()
            layout = seed(students)
            connections.close_all()
            print(f"seeded {students} students in {time.perf_counter() - started:.0f} s", flush=True)
            results = asyncio.run(run(args, layout, env, database_url.rsplit("/", 1)[1], servers))
            report(results, args)
        finally:
            for server in servers:
                server.process.terminate()
            for server in servers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.process.wait(10)
                if server.process.poll() is None:
                    server.process.kill()


async def run(
    args: argparse.Namespace, layout: Layout, env: dict[str, str], database: str, servers: list[Server]
) -> dict[str, Any]:
    systems = [s for s in args.systems.split(",") if s]
    scenarios = [s for s in args.scenarios.split(",") if s]
    ports = {"commonroom": 8111, "b0": 8112, "b1": 8113}
    started = {system: start(system, ports[system], env) for system in systems}
    servers += started.values()
    profiler = None
    if args.profile and "commonroom" in started:
        profiler = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(started["commonroom"].pid),
             "--rate", "250", "--format", "raw", "--nonblocking", "--output", str(RESULTS / "profile.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    infra = {
        "commonroom": pids_named("postgres") + pids_named("redis-server"),
        "b0": [],
        "b1": pids_named("redis-server"),
    }
    seconds = 10.0 if args.long else 2.0
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "mode": "long" if args.long else "default",
        "step_seconds": seconds,
        "target_p99_ms": TARGET_MS,
        "scenarios": {},
    }
    for scenario in scenarios:
        print(f"{scenario}:", flush=True)
        results["scenarios"][scenario] = {}
        for system in systems:
            if scenario in ("two_processes", "flood") and system != "commonroom":
                continue  # Commonroom's own: the baselines have no rate limit to flood
            if scenario == "two_processes":
                second = start("commonroom", 8114, env)
                servers.append(second)
                bench = Bench(layout, system, [started[system], second], infra[system], database, args.postgres)
                results["scenarios"][scenario][system] = await scenario_classes10x30(bench, seconds)
                second.process.terminate()
                second.process.wait(10)
                continue
            bench = Bench(layout, system, [started[system]], infra[system], database, args.postgres)
            if scenario == "memory":
                # A process of its own: one that has served other scenarios keeps their memory in its
                # allocator, and new sockets would reuse it without growing RSS.
                fresh = start(system, ports[system] + 10, env)
                servers.append(fresh)
                bench = Bench(layout, system, [fresh], infra[system], database, args.postgres)
                sizes = (300, 2000, 5000) if args.long else (300, 2000)
                outcome = await scenario_memory(bench, seconds, sizes)
                fresh.process.terminate()
                fresh.process.wait(10)
            elif scenario == "soak":
                outcome = await scenario_soak(bench, 600 if args.long else 60 if system == "commonroom" else 20)
            else:
                outcome = await SCENARIO_RUNS[scenario](bench, seconds)
            results["scenarios"][scenario][system] = outcome
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(30)
    return results


SCENARIO_RUNS = {
    "class30": scenario_class30,
    "cohort300": scenario_cohort300,
    "classes10x30": scenario_classes10x30,
    "burst": scenario_burst,
    "storm": scenario_storm,
    "flood": scenario_flood,
}


# -- the report ------------------------------------------------------------------------------------


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "load-long" if args.long else "load"
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    rows = table(results)
    print()
    print("\n".join(rows))
    written = [f"bench/results/{name}.json"]
    if plot(results, RESULTS / f"{name}.png"):
        written.append(f"bench/results/{name}.png")
    print(f"\nwrote {' and '.join(written)}")


def table(results: dict[str, Any]) -> list[str]:
    rows = [
        "| scenario | system | knee (msg/s per room) | p99 to last member at the knee (ms) | CPU ms per delivery "
        "at the knee | DB ms per message | lost / dup / out of order |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for scenario, systems in results["scenarios"].items():
        for system, outcome in systems.items():
            if "knee" in outcome:
                at: list[dict[str, Any]] = [s for s in outcome["steps"] if s["ok"]]
                step = at[-1] if at else outcome["steps"][0]
                bad = [s for s in outcome["steps"] if s is step or s["ok"]]
                faults = "/".join(str(sum(s[k] for s in bad)) for k in ("lost", "duplicated", "out_of_order"))
                rows.append(
                    f"| {scenario} | {system} | {outcome['knee']} | {step['last_member_ms']['p99']} | "
                    f"{step['server_cpu_ms_per_delivery']} | {step['db_ms_per_message'] or '-'} | {faults} |"
                )
            elif "bursts" in outcome:
                worst = max(b["last_member_ms"]["p99"] for b in outcome["bursts"])
                faults = "/".join(
                    str(sum(b[k] for b in outcome["bursts"])) for k in ("lost", "duplicated", "out_of_order")
                )
                rows.append(f"| burst of 30 in 2 s | {system} | - | {worst} | - | - | {faults} |")
            elif "flooded" in outcome:
                peaceful, flooded = outcome["peaceful"], outcome["flooded"]
                faults = "/".join(str(flooded[k]) for k in ("lost", "duplicated", "out_of_order"))
                rows.append(
                    f"| flood beside a class at 10/s | {system} | - | {peaceful['last_member_ms']['p99']} in peace, "
                    f"{flooded['last_member_ms']['p99']} flooded ({outcome['frames']} frames, closed "
                    f"{outcome['closed_for_flooding']} times) | - | - | {faults} |"
                )
            elif "to_ready_ms" in outcome:
                rows.append(
                    f"| storm: 300 sockets in 1 s | {system} | - | to ready p99 {outcome['to_ready_ms']['p99']} | - "
                    f"| - | {outcome['failed']} failed |"
                )
            elif "per_connection_kib" in outcome:
                sizes = ", ".join(f"{n}: {kib} KiB" for n, kib in outcome["per_connection_kib"].items())
                rows.append(
                    f"| memory per connection | {system} | - | {sizes} | - | - | RSS growth over cycles "
                    f"{outcome['growth_over_cycles_kib']} KiB |"
                )
            elif "windows" in outcome:
                faults = "/".join(
                    str(sum(w[k] for w in outcome["windows"])) for k in ("lost", "duplicated", "out_of_order")
                )
                rows.append(
                    f"| soak ({outcome['connected']} sockets) | {system} | - | worst window {outcome['worst_p99_ms']} "
                    f"| - | - | {faults}; RSS growth after warm-up {outcome['rss_growth_after_warmup_kib']} KiB |"
                )
    return rows


def plot(results: dict[str, Any], path: Path) -> bool:
    """Latency against rate, one panel per ramp and one line per system; False if there was no ramp."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    ramps = [(s, o) for s, o in results["scenarios"].items() if any("knee" in x for x in o.values())]
    if not ramps:
        return False
    figure, axes = pyplot.subplots(1, len(ramps), figsize=(5 * len(ramps), 4), squeeze=False)
    for axis, (scenario, systems) in zip(axes[0], ramps, strict=True):
        lines = dict(systems)
        if scenario == "two_processes" and "commonroom" in results["scenarios"].get("classes10x30", {}):
            lines = {"commonroom, two processes": systems["commonroom"]}
            lines["commonroom, one process"] = results["scenarios"]["classes10x30"]["commonroom"]
        for system, outcome in lines.items():
            steps = outcome["steps"]
            axis.plot([s["rate"] for s in steps], [s["last_member_ms"]["p99"] for s in steps], marker="o", label=system)
        axis.axhline(TARGET_MS, color="grey", linestyle="--", linewidth=1)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_title(scenario)
        axis.set_xlabel("messages per second per room")
        axis.set_ylabel("p99 delivery to the last member (ms)")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return True


if __name__ == "__main__":
    main()
