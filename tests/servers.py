"""Real server processes for the end-to-end and fault tests: daphne processes on loopback (started as
in production, through `commonroom.serve`) on the test database, a private Redis, and helpers for
their WebSocket clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.test import Client
from websockets.asyncio.client import ClientConnection
from websockets.typing import Origin

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, name: str, process: subprocess.Popen[bytes], log: Path | None = None) -> None:
    """Wait (up to 10 s) until something listens on `port` on loopback; fail at once if `process`
    stops meanwhile, with `log` if it has one."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if process.poll() is not None:
                raise AssertionError(f"{name} stopped: {log.read_text() if log else ''}") from None
            assert time.monotonic() < deadline, f"{name} did not start"
            time.sleep(0.05)


def the_database_url(port: int | None = None) -> str:
    """The test database's URL, reached through `port` on loopback if given (a `Proxy` in front of it)."""
    database = connection.settings_dict
    host = "127.0.0.1" if port is not None else database["HOST"]
    return f"postgres://{database['USER']}:{database['PASSWORD'] or ''}@{host}:{port or database['PORT']}/{database['NAME']}"


def database_proxy() -> Proxy:
    """A `Proxy` in front of the test database (PostgreSQL)."""
    database = connection.settings_dict
    return Proxy(database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432))


@dataclass
class Daphne:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/"

    @property
    def origin(self) -> Origin:
        return Origin(f"http://127.0.0.1:{self.port}")


@contextmanager
def daphne_processes(
    tmp_path: Path,
    count: int = 2,
    redis_url: str | None = None,
    *,
    options: Sequence[str] = (),
    application: str | None = None,
    database_url: str | None = None,
) -> Iterator[list[Daphne]]:
    """`count` daphne processes on loopback, started as in production (`commonroom.serve`, serving the
    `application` of a test's own if one is named), with `options` added to daphne's, on the test database and
    Redis (the test one unless `redis_url` or `database_url` names another); stopped afterwards."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "commonroom.settings",
        "DEBUG": "0",
        "SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": database_url or the_database_url(),
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
    paths = [tmp_path / f"daphne-{port}.log" for port in ports]  # read them when a test fails
    logs = [path.open("wb") for path in paths]
    start = ["-m", "commonroom.serve"]
    if application is not None:
        start = ["-c", f"from commonroom import serve; serve.main(application={application!r})"]
    processes = [
        subprocess.Popen(
            [sys.executable, *start, "-b", "127.0.0.1", "-p", str(port), *options],
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
        yield [Daphne(port, process, path) for port, process, path in zip(ports, processes, paths, strict=True)]
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


@contextmanager
def daphne_servers(tmp_path: Path, count: int = 2, redis_url: str | None = None) -> Iterator[list[int]]:
    """The ports of `count` daphne processes started by `daphne_processes`."""
    with daphne_processes(tmp_path, count, redis_url) as servers:
        yield [server.port for server in servers]


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def frames_until(ws: ClientConnection, kind: str, timeout: float = 10) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["type"] == kind:
            return frame


@contextmanager
def private_redis() -> Iterator[tuple[str, Any]]:
    """A Redis server of the test's own on loopback (so that stopping it touches nobody else's), and
    functions that stop it and start it again on the same port."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    state = {"process": subprocess.Popen(command, stdout=subprocess.DEVNULL)}

    def wait_until_up() -> None:
        wait_for_port(port, "redis", state["process"])

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


class Proxy:
    """A TCP proxy on a loopback port of its own in front of `host:port` (a server, the database),
    which a test can cut and restore: `cut()` drops every connection through it and refuses new ones,
    which is what a client sees when the network fails or, in front of PostgreSQL, when the database
    stops."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.up = True
        self.downstream = True  # False: bytes from the server are dropped (an answer lost on the way)
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            server = socket.create_connection(self.target)
            with self.lock:
                self.open |= {client, server}
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, down: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if down and not self.downstream:
                    continue
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                self._close(end)

    def _close(self, end: socket.socket) -> None:
        with self.lock:
            self.open.discard(end)
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
        end.close()

    def cut(self) -> None:
        """Every connection drops, and new ones are refused, until `restore`."""
        self.up = False
        with self.lock:
            ends = list(self.open)
        for end in ends:
            self._close(end)

    def restore(self) -> None:
        self.downstream = True
        self.up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()
