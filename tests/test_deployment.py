"""The deployment as shipped: the repository's nginx configuration (deploy/nginx/) run by the system's
nginx in front of two real daphne processes, and docker-compose.yml checked for what it claims.

nginx runs deploy/nginx/nginx.conf unchanged; only the two files that say where things are differ:
upstream.conf gets the test's daphne addresses in place of app1:8000 and app2:8000 (the rest of it,
the balancing method included, stays), and listen.conf (or listen-tls.conf) a free loopback port.
Docker itself cannot run here, so the compose file is checked by reading it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import http.client
import ipaddress
import json
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from classes.models import User
from commonroom import serve
from tests.conftest import REQUIRE_SERVICES, SchoolPeople, make_school
from tests.servers import ROOT, Daphne, daphne_processes, frames_until, free_port, session_cookie, wait_for_port

NGINX = Path("/usr/sbin/nginx")  # Debian's nginx-light (.ci/run installs it)
DEPLOY = ROOT / "deploy" / "nginx"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SERVE_COMMAND = ["python", "-m", "commonroom.serve", "-b", "0.0.0.0", "-p", "8000"]  # noqa: S104  (in a container)
SERVER_LINE = re.compile(r"^(\s*server\s+)(\S+)(.*;)$", re.MULTILINE)
LISTEN_LINE = re.compile(r"^listen \d+( ssl)?;$", re.MULTILINE)

# --- reading the configuration ------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def app_services(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run a daphne process: those whose command starts commonroom.serve."""
    return {
        name: service
        for name, service in services.items()
        if "commonroom.serve" in " ".join(service.get("command") or [])
    }


def upstream_servers() -> list[tuple[str, int]]:
    """(host, port) of each `server` line of deploy/nginx/upstream.conf, in order."""
    found = []
    for _, address, _ in SERVER_LINE.findall((DEPLOY / "upstream.conf").read_text()):
        host, port = address.rsplit(":", 1)
        found.append((host, int(port)))
    return found


def app_options() -> list[str]:
    """What compose adds to the image's command for an app process (the same for every one)."""
    commands = {tuple(service["command"]) for service in app_services(compose()["services"]).values()}
    assert len(commands) == 1, commands
    command = list(commands.pop())
    assert command[: len(SERVE_COMMAND)] == SERVE_COMMAND
    return command[len(SERVE_COMMAND) :]


def location_block(path: str) -> str:
    """The text of `location <path> { ... }` in nginx.conf (no nested blocks in ours)."""
    text = (DEPLOY / "nginx.conf").read_text()
    found = re.search(r"^\s*location " + re.escape(path) + r" \{(.*?)^\s*\}", text, re.MULTILINE | re.DOTALL)
    assert found, path
    return found.group(1)


# --- running nginx --------------------------------------------------------------------------------


def need_nginx() -> None:
    if not NGINX.exists():
        message = f"{NGINX} is not installed (Debian: apt-get install nginx-light)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message}, and COMMONROOM_REQUIRE_SERVICES=1 forbids skipping it")
        pytest.skip(message)


@dataclass
class Tls:
    certificate: Path
    key: Path
    context: ssl.SSLContext  # a client context that trusts the certificate


def self_signed(folder: Path) -> Tls:
    """A certificate for 127.0.0.1, valid for a day, and a client context that trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    certificate_path, key_path = folder / "fullchain.pem", folder / "privkey.pem"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Tls(certificate_path, key_path, ssl.create_default_context(cafile=str(certificate_path)))


def render(folder: Path, upstreams: list[int], port: int, tls: Tls | None = None) -> Path:
    """The repository's nginx configuration in `folder`: nginx.conf as it is, upstream.conf with these
    loopback ports for its servers, listen.conf (or listen-tls.conf, with these certificates) on `port`."""
    folder.mkdir(parents=True)
    shutil.copyfile(DEPLOY / "nginx.conf", folder / "nginx.conf")
    upstream = (DEPLOY / "upstream.conf").read_text()
    assert len(SERVER_LINE.findall(upstream)) == len(upstreams), "one daphne process per upstream server"
    ports = iter(upstreams)
    (folder / "upstream.conf").write_text(
        SERVER_LINE.sub(lambda line: f"{line.group(1)}127.0.0.1:{next(ports)}{line.group(3)}", upstream)
    )
    listen = (DEPLOY / ("listen-tls.conf" if tls else "listen.conf")).read_text()
    assert len(LISTEN_LINE.findall(listen)) == 1
    listen = LISTEN_LINE.sub(lambda line: f"listen 127.0.0.1:{port}{line.group(1) or ''};", listen)
    if tls:
        assert "/etc/nginx/tls/fullchain.pem" in listen
        assert "/etc/nginx/tls/privkey.pem" in listen
        listen = listen.replace("/etc/nginx/tls/fullchain.pem", str(tls.certificate))
        listen = listen.replace("/etc/nginx/tls/privkey.pem", str(tls.key))
    (folder / "listen.conf").write_text(listen)
    return folder / "nginx.conf"


def nginx_command(prefix: Path, config: Path, *test: str) -> list[str]:
    """nginx as the current user, with its pid file, error log and temporary files under `prefix`."""
    directives = f"user {getpass.getuser()}; pid {prefix}/nginx.pid; error_log {prefix}/error.log notice;"
    return [str(NGINX), *test, "-p", f"{prefix}/", "-c", str(config), "-g", directives]


@dataclass
class Nginx:
    port: int
    prefix: Path

    @property
    def access_log(self) -> str:
        return (self.prefix / "access.log").read_text()


@contextmanager
def nginx(tmp_path: Path, servers: list[Daphne], tls: Tls | None = None) -> Iterator[Nginx]:
    """The repository's nginx configuration, run in front of these daphne processes; stopped after."""
    need_nginx()
    port = free_port()
    prefix = tmp_path / ("nginx-tls" if tls else "nginx")
    config = render(prefix / "conf", [server.port for server in servers], port, tls)
    # The access log goes to nginx's stdout; what goes wrong before the error log opens, to stderr.
    with (prefix / "access.log").open("wb") as access_log, (prefix / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            [*nginx_command(prefix, config), "-g", "daemon off;"], stdout=access_log, stderr=stderr
        )
        try:
            wait_for_port(port, "nginx", process, prefix / "stderr.log")
            yield Nginx(port, prefix)
        finally:
            process.terminate()
            process.wait(timeout=10)


# --- an HTTP client that keeps control of its headers and its source address ----------------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def cookies(self) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        for header in self.headers.get_all("Set-Cookie") or []:
            jar.load(header)
        return {name: morsel.value for name, morsel in jar.items()}


def fetch(
    port: int,
    path: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    source: str = "127.0.0.1",
    tls: Tls | None = None,
) -> Answer:
    connection: http.client.HTTPConnection
    if tls:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=20, source_address=(source, 0), context=tls.context
        )
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20, source_address=(source, 0))
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def sign_in(port: int, username: str, password: str, *, source: str = "127.0.0.1", tls: Tls | None = None) -> Answer:
    """Sign in through the form as a browser does: the page, then a POST with the CSRF token, the
    cookie and the page's Origin (which Django compares with the scheme and Host it was given)."""
    page = fetch(port, "/login/", source=source, tls=tls)
    assert page.status == 200
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    assert token
    form = {"csrfmiddlewaretoken": token.group(1).decode(), "username": username, "password": password}
    return fetch(
        port,
        "/login/",
        method="POST",
        body=urllib.parse.urlencode(form).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={page.cookies()['csrftoken']}",
            "Origin": f"{'https' if tls else 'http'}://127.0.0.1:{port}",
            # A client cannot choose the address the app sees: nginx overwrites this.
            "X-Forwarded-For": "203.0.113.7",
        },
        source=source,
        tls=tls,
    )


def first_line_for_body(port: int, path: str, length: int) -> str:
    """What nginx answers to a POST announcing a body of `length` bytes, with `Expect: 100-continue`:
    `100 Continue` when it would take the body, 413 when it is over the limit. No body is sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/zip\r\n"
            f"Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        return connection.recv(200).split(b"\r\n", 1)[0].decode()


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Daphne]]:
    """Two daphne processes on the test database and Redis, started with what compose adds."""
    with daphne_processes(tmp_path, 2, options=app_options()) as processes:
        yield processes


@pytest.fixture
def people() -> SchoolPeople:
    """A school whose people sign in with the password `pw`, hashed as the servers hash it (the suite's
    own settings hash with MD5, which the production settings do not accept)."""
    people = make_school("Deployment School", "dp", open_class_rooms=True)
    hasher = Argon2PasswordHasher()
    for person in vars(people).values():
        if isinstance(person, User):
            person.password = hasher.encode("pw", hasher.salt())
            person.save(update_fields=["password"])
    return people


# --- the compose file and the image ---------------------------------------------------------------


def test_compose_runs_several_daphne_processes_behind_the_repositorys_nginx() -> None:
    services = compose()["services"]
    apps = app_services(services)
    assert len(apps) >= 2, "at least two daphne processes"
    options = app_options()  # one command for all, the image's with options added
    assert "--proxy-headers" in options

    # nginx's upstreams are exactly the app services, on the port their command serves.
    assert sorted(upstream_servers()) == sorted((name, 8000) for name in apps)

    # The app processes are reached only through nginx (daphne trusts its X-Forwarded-* headers).
    for name, service in apps.items():
        assert "ports" not in service, name
    proxy = services["nginx"]
    assert "./deploy/nginx:/etc/nginx/commonroom:ro" in proxy["volumes"]
    command = proxy["command"]
    assert command[command.index("-c") + 1] == "/etc/nginx/commonroom/nginx.conf"
    # Published on loopback only, to the port listen.conf listens on.
    [published] = proxy["ports"]
    address, _, inside = published.rpartition(":")
    assert address.startswith("127.0.0.1:")
    assert re.search(rf"^listen {inside};$", (DEPLOY / "listen.conf").read_text(), re.MULTILINE)
    assert set(proxy["depends_on"]) == set(apps)
    assert all(proxy["depends_on"][name]["condition"] == "service_healthy" for name in apps)
    assert "healthcheck" in proxy


def test_compose_runs_the_production_settings() -> None:
    services = compose()["services"]
    apps = app_services(services)
    environments = [services[name]["environment"] for name in [*apps, "migrate"]]
    assert all(environment == environments[0] for environment in environments), "one environment for all"
    environment = environments[0]
    assert str(environment.get("DEBUG", "false")).lower() in {"false", "0", "no", "off"}
    # Compose refuses to start without a SECRET_KEY (`${VAR:?message}`); none is written in the file.
    assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", environment["SECRET_KEY"])
    assert environment["DATABASE_URL"].startswith("postgres://")
    assert environment["REDIS_URL"].startswith("redis://")
    assert environment["CHANNEL_PREFIX"]
    assert environment["ALLOWED_HOSTS"]
    assert environment["CSRF_TRUSTED_ORIGINS"]
    assert str(environment["BEHIND_TLS_PROXY"]).lower() == "true"
    for name, service in apps.items():
        assert not service.get("healthcheck", {}).get("disable"), f"{name} keeps the image's healthcheck"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]


def test_the_image_starts_daphne_through_commonroom_serve() -> None:
    commands = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("CMD ")]
    assert json.loads(commands[-1].removeprefix("CMD ")) == SERVE_COMMAND


def test_nginx_limits_match_the_apps() -> None:
    """The socket's idle limits outlast daphne's keep-alive, and the roster upload's body limit is a
    little above ROSTER_UPLOAD_MAX_MB (so the app, not nginx, refuses a bundle just over it)."""
    socket_location = location_block("/ws/")
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        found = re.search(rf"{directive} (\d+)s;", socket_location)
        assert found, directive
        assert int(found.group(1)) > serve.PING_INTERVAL + serve.PING_TIMEOUT
    upload = re.search(r"client_max_body_size (\d+)m;", location_block("= /admin/import-roster/"))
    assert upload
    assert settings.ROSTER_UPLOAD_MAX_MB < int(upload.group(1)) <= settings.ROSTER_UPLOAD_MAX_MB * 1.1


# --- nginx in front of two daphne processes -----------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
def test_nginx_accepts_the_configuration(tmp_path: Path) -> None:
    """`nginx -t` on the configuration, with listen.conf and with listen-tls.conf."""
    need_nginx()
    for tls in (None, self_signed(tmp_path / "certificate")):
        prefix = tmp_path / ("tls" if tls else "plain")
        config = render(prefix / "conf", [free_port(), free_port()], free_port(), tls)
        checked = subprocess.run(nginx_command(prefix, config, "-t"), capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr
        assert "test is successful" in checked.stderr


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_pages_sign_in_and_static_files_through_nginx(
    tmp_path: Path, servers: list[Daphne], people: SchoolPeople
) -> None:
    from axes.models import AccessAttempt  # type: ignore[import-untyped]

    with nginx(tmp_path, servers) as proxy:
        health = fetch(proxy.port, "/healthz")
        assert health.status == 200
        assert json.loads(health.body) == {"status": "ok", "database": "ok", "channel_layer": "ok"}

        page = fetch(proxy.port, "/login/")
        assert page.status == 200
        # Static files come from the app (WhiteNoise), through nginx, under their hashed names.
        stylesheet = re.search(rb'href="(/static/frontend/commonroom\.[0-9a-f]+\.css)"', page.body)
        assert stylesheet
        style = fetch(proxy.port, stylesheet.group(1).decode())
        assert style.status == 200
        assert style.headers["Content-Type"].startswith("text/css")
        assert "max-age" in style.headers["Cache-Control"]

        # Signing in passes Django's CSRF origin check: nginx gave it the Host with its port.
        signed_in = sign_in(proxy.port, people.student.username, "pw")
        assert signed_in.status == 302, signed_in.body[:500]
        assert "sessionid" in signed_in.cookies()

        # A wrong password from another address is counted against that address (nginx's
        # X-Forwarded-For, read by daphne's --proxy-headers), not nginx's, nor the one the client sent.
        refused = sign_in(proxy.port, people.teacher.username, "wrong", source="127.0.0.2")
        assert refused.status == 200
        addresses = set(
            AccessAttempt.objects.filter(username=people.teacher.username).values_list("ip_address", flat=True)
        )
        assert addresses == {"127.0.0.2"}

        # Request bodies: small forms up to 10 MB; the roster upload up to 210 MB; above, nginx's 413.
        assert first_line_for_body(proxy.port, "/login/", 2 * 1024 * 1024) == "HTTP/1.1 100 Continue"
        assert first_line_for_body(proxy.port, "/login/", 11 * 1024 * 1024).startswith("HTTP/1.1 413")
        upload = "/admin/import-roster/"
        assert first_line_for_body(proxy.port, upload, 205 * 1024 * 1024) == "HTTP/1.1 100 Continue"
        assert first_line_for_body(proxy.port, upload, 211 * 1024 * 1024).startswith("HTTP/1.1 413")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_sockets_through_nginx_reach_both_processes_and_each_other(
    tmp_path: Path, servers: list[Daphne], people: SchoolPeople
) -> None:
    teacher_cookie = session_cookie(people.teacher)

    with nginx(tmp_path, servers) as proxy:
        # The student signs in through nginx; the teacher has a session already.
        student_cookie = f"sessionid={sign_in(proxy.port, people.student.username, 'pw').cookies()['sessionid']}"
        url, origin = f"ws://127.0.0.1:{proxy.port}/ws/", Origin(f"http://127.0.0.1:{proxy.port}")

        async def conversation() -> None:
            async with connect(url, origin=origin, additional_headers={"Cookie": student_cookie}) as student:
                ready = await frames_until(student, "ready")
                # Opened while the student's is open: least_conn sends it to the other process.
                async with connect(url, origin=origin, additional_headers={"Cookie": teacher_cookie}) as teacher:
                    await frames_until(teacher, "ready")
                    room = next(r["id"] for r in ready["rooms"] if r["kind"] == "class")
                    client_id = str(uuid.uuid4())
                    frame = {"type": "send", "room": room, "client_id": client_id, "body": "Through nginx"}
                    await student.send(json.dumps(frame))
                    ack = await frames_until(student, "ack")
                    heard = await frames_until(teacher, "message")
                    assert heard["message"]["id"] == ack["message"]["id"]
                    assert heard["message"]["body"] == "Through nginx"

        asyncio.run(conversation())

        # nginx logs a socket when it closes: status 101, and the daphne process that served it.
        expected = {f"127.0.0.1:{server.port}" for server in servers}
        deadline = time.monotonic() + 10
        while True:
            served = re.findall(r'"GET /ws/ HTTP/1\.1" 101 .*?upstream=(\S+)', proxy.access_log)
            if len(served) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(served) == 2, proxy.access_log
        assert set(served) == expected, "each socket went to another daphne process"

        # A script reconnecting in a loop with one cookie: past a burst of 20, nginx answers 429
        # itself; someone else's socket still opens.
        async def reconnecting(cookie: str, times: int) -> list[int]:
            statuses = []
            for _ in range(times):
                try:
                    async with connect(url, origin=origin, additional_headers={"Cookie": cookie}):
                        statuses.append(101)
                except InvalidStatus as refused:
                    statuses.append(refused.response.status_code)
            return statuses

        statuses = asyncio.run(reconnecting(student_cookie, 40))
        assert statuses[:10] == [101] * 10
        assert statuses.count(429) >= 10, statuses
        assert set(statuses) == {101, 429}
        assert asyncio.run(reconnecting(teacher_cookie, 1)) == [101]


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_tls_terminates_at_nginx(tmp_path: Path, servers: list[Daphne], people: SchoolPeople) -> None:
    """With listen-tls.conf, HTTPS and WSS through nginx work, and the app knows the request was
    secure: a form posted from an https page passes the CSRF origin check only if it does."""
    tls = self_signed(tmp_path / "tls")
    with nginx(tmp_path, servers, tls) as proxy:
        assert fetch(proxy.port, "/healthz", tls=tls).status == 200
        signed_in = sign_in(proxy.port, people.student.username, "pw", tls=tls)
        assert signed_in.status == 302, signed_in.body[:500]
        cookie = f"sessionid={signed_in.cookies()['sessionid']}"

        async def open_socket() -> dict[str, Any]:
            async with connect(
                f"wss://127.0.0.1:{proxy.port}/ws/",
                ssl=tls.context,
                origin=Origin(f"https://127.0.0.1:{proxy.port}"),
                additional_headers={"Cookie": cookie},
            ) as ws:
                return await frames_until(ws, "ready")

        assert asyncio.run(open_socket())["rooms"]
