"""The authorization matrix: every role against every action, in one table, checked over HTTP and the socket.

`MATRIX` is the product's permission model as a reviewer reads it, and each (role, action, channel) is
its own test. An allowed pair must really work: the message is saved, the case escalated, the export
returned. A refused pair must change nothing, and must get exactly the answer that an id that exists
nowhere gets. There is one exception, `told_why`: someone who reads the room is told why they may not act
in it (a stable error code), because they can see the room and its messages anyway. Everyone else gets
the answer of a missing id, so no answer tells them that a room, message, case or event exists.
"""

from __future__ import annotations

import io
import re
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.db.models import Max, Model
from django.test import Client, override_settings
from django.urls import resolve
from django_scopes import scopes_disabled

from audit.models import AuditEvent
from classes.models import Cohort, CohortMembership, CohortStaff, Enrollment, School, StaffRole, User
from messaging import services
from messaging.consumers import CLOSE_UNAUTHENTICATED, HANDLERS, ChatConsumer
from messaging.models import Message, Mute, Room
from messaging.rooms import sync_rooms
from moderation import review
from moderation.models import Case
from tests.conftest import SchoolPeople, make_school

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

# -- the table ------------------------------------------------------------------------------------------

ROLES = (
    "student",  # in the class and in its cohort
    "teacher",  # teaches the class
    "other_teacher",  # teaches another class of the school
    "aide",  # an aide in the class
    "moderator",  # head of year: a moderator for the student's cohort
    "other_moderator",  # a moderator for another cohort (whose students are in the other class)
    "safeguarding_lead",
    "admin",  # the school admin
    "other_school",  # someone of another school who holds every role there: teacher, moderator, lead, admin
    "operator",  # a platform operator: a superuser of no school
    "anonymous",  # signed out
)

ACTIONS = (
    "read",  # read the class room
    "post",  # post in it
    "edit",  # edit the student's recent message in it
    "remove",  # remove a classmate's message from it
    "mute",  # mute that classmate in it
    "lock",  # lock it
    "report",  # report the classmate's message
    "read_case",  # open the case about that message (a level-1 case: the class teacher's)
    "escalate",  # escalate that case
    "search",  # search the school's messages
    "export",  # export the case, and the classmate's chronology
    "verify",  # read an event of the school's audit chain
    "import",  # import a roster bundle for the school
)

Y, N = True, False

# fmt: off
MATRIX: dict[str, tuple[bool, ...]] = {
    #                    read post edit remove mute lock report read_case escalate search export verify import
    "student":           (Y,   Y,   Y,   N,     N,   N,   Y,     N,        N,       N,     N,     N,     N),
    "teacher":           (Y,   Y,   N,   Y,     Y,   Y,   Y,     Y,        Y,       N,     N,     N,     N),
    "other_teacher":     (N,   N,   N,   N,     N,   N,   N,     N,        N,       N,     N,     N,     N),
    "aide":              (Y,   Y,   N,   N,     N,   N,   Y,     N,        N,       N,     N,     N,     N),
    "moderator":         (Y,   N,   N,   Y,     Y,   Y,   Y,     Y,        Y,       N,     N,     N,     N),
    "other_moderator":   (N,   N,   N,   N,     N,   N,   N,     N,        N,       N,     N,     N,     N),
    "safeguarding_lead": (Y,   N,   N,   Y,     Y,   Y,   Y,     Y,        Y,       Y,     Y,     N,     N),
    "admin":             (N,   N,   N,   N,     N,   N,   N,     N,        N,       N,     N,     N,     Y),
    "other_school":      (N,   N,   N,   N,     N,   N,   N,     N,        N,       N,     N,     N,     N),
    "operator":          (N,   N,   N,   N,     N,   N,   N,     N,        N,       N,     N,     Y,     Y),
    "anonymous":         (N,   N,   N,   N,     N,   N,   N,     N,        N,       N,     N,     N,     N),
}
# fmt: on
# Cells a reader might not expect, as the product has them: an aide takes part in the class and posts; the
# moderators and the safeguarding lead read and moderate the room but do not post in it (messaging/policy.py);
# the school admin reads no room (separation of duties) but imports their school's roster; the audit log,
# and so its chain, is read in the admin by platform operators only (audit/admin.py), so no role of a school
# has a way to verify it (`manage.py audit_verify` runs on the server).

# Where each action is offered: a socket frame (messaging/consumers.py HANDLERS) or a page (commonroom/urls.py).
# Where the product offers an action on both, both are checked.
ENTRY_POINTS: dict[str, dict[str, str]] = {
    "read": {"http": "GET /rooms/<room>/", "socket": "sync and history {room}; the room listed in `ready`"},
    "post": {"socket": "send {room, client_id, body}"},
    "edit": {"socket": "edit {message, body}"},
    "remove": {"socket": "delete {message, reason}", "http": "POST /cases/<case>/ step=act action=hide_message"},
    "mute": {"socket": "mute {room, user, reason}", "http": "POST /cases/<case>/ step=act action=mute_author"},
    "lock": {"socket": "lock {room, reason}", "http": "POST /cases/<case>/ step=act action=lock_room"},
    "report": {"socket": "report {message, category, note}"},
    "read_case": {"http": "GET /cases/<case>/"},
    "escalate": {"http": "POST /cases/<case>/ step=escalate"},
    "search": {"http": "GET /review/search/?text=lunch&room=<room>, after giving a reason"},
    "export": {"http": "GET /review/export/cases/<case>/ and /review/export/people/<person>/, after a reason"},
    "verify": {"http": "GET /admin/audit/auditevent/<event>/change/ and /admin/audit/auditevent/<event>/history/"},
    "import": {"http": "POST /admin/import-roster/ with a bundle naming the school"},
}

# The consumer's other frames, and the action whose check goes through the same door.
OTHER_FRAMES = {
    "read": "read",  # moves a read position: policy.room_for, as sync does
    "open": "lock",  # open, close and unlock: services._moderated_room, as lock does
    "close": "lock",
    "unlock": "lock",
    "unmute": "mute",
    "accept_policy": "",  # names no room, message or case
}

# What someone who reads the room is told when they may not do this in it.
REFUSAL = {
    "post": "not_a_member",
    "edit": "not_allowed",
    "remove": "not_allowed",
    "mute": "not_allowed",
    "lock": "not_allowed",
}


def allowed(role: str, action: str) -> bool:
    return MATRIX[role][ACTIONS.index(action)]


def told_why(role: str, action: str, channel: str) -> bool:
    """Does a refusal of this pair say why, rather than answer as for a missing id? Only on the socket, to
    someone who reads the room the action is in. A case, the review pages and the admin answer everyone
    they refuse as if the thing did not exist."""
    return channel == "socket" and action in REFUSAL and allowed(role, "read")


def pairs(channel: str) -> list[Any]:
    return [
        pytest.param(role, action, id=f"{role}-{action}")
        for action in ACTIONS
        if channel in ENTRY_POINTS[action]
        for role in ROLES
    ]


# -- the school, its people, and what they act on ----------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    """The ids the actions name: the school's real ones, or ones that exist nowhere."""

    room: int  # the class room
    message: int  # the student's
    classmates_message: int  # the one the case is about
    classmate: int
    case: int
    event: int
    school: str  # the school's OneRoster sourcedId

    def words(self) -> list[str]:
        return [str(getattr(self, field.name)) for field in fields(self)]


@dataclass
class World:
    people: SchoolPeople
    personas: dict[str, User | None]
    room: Room
    classmate: User
    real: Targets
    missing: Targets


UNKIND = "Nobody wants you on the team"
OWN = "See you at lunch"


def _user(school: School, username: str, role: str) -> User:
    return User.objects.create_user(
        username, password="pw", school=school, role=role, given_name=username.rsplit(".", maxsplit=1)[-1].title()
    )


def _missing(model: type[Model], ahead: int = 1_000_000) -> int:
    with scopes_disabled():
        return int(model._base_manager.aggregate(top=Max("pk"))["top"] or 0) + ahead


def build_world() -> World:
    """The school of `make_school` with its personas, plus a moderator for the student's cohort, one for
    another cohort, a classmate of the student, someone of another school and a platform operator; a message
    of the student's, and one of the classmate's that the aide has reported (which opens a level-1 case)."""
    people = make_school("Matrix School", "m", open_class_rooms=True)
    other = make_school("Elsewhere School", "e", open_class_rooms=True)
    school = people.school
    with scopes_disabled(), transaction.atomic():
        StaffRole.objects.get(user=people.moderator, role=StaffRole.Role.MODERATOR).cohorts.add(people.cohort)
        younger = Cohort.objects.create(school=school, graduation_year=2029)
        other_moderator = _user(school, "m.othermoderator", User.Role.TEACHER)
        role = StaffRole.objects.create(school=school, user=other_moderator, role=StaffRole.Role.MODERATOR)
        role.cohorts.add(younger)
        junior = _user(school, "m.junior", User.Role.STUDENT)
        CohortMembership.objects.create(school=school, cohort=younger, user=junior)
        Enrollment.objects.create(school=school, school_class=people.other_class, user=junior, role="student")
        classmate = _user(school, "m.classmate", User.Role.STUDENT)
        CohortMembership.objects.create(school=school, cohort=people.cohort, user=classmate)
        Enrollment.objects.create(school=school, school_class=people.school_class, user=classmate, role="student")
        outsider = other.safeguarding_lead
        for extra in (StaffRole.Role.MODERATOR, StaffRole.Role.SCHOOL_ADMIN):
            StaffRole.objects.create(school=other.school, user=outsider, role=extra)
        Enrollment.objects.create(school=other.school, school_class=other.school_class, user=outsider, role="teacher")
        sync_rooms([school.pk])
        room = Room.objects.get(school_class=people.school_class)
    operator = User.objects.create_superuser("m.operator", password="pw")
    unkind = services.send_message(user=classmate, room_id=room.pk, client_id=uuid.uuid4(), body=UNKIND).message
    own = services.send_message(user=people.student, room_id=room.pk, client_id=uuid.uuid4(), body=OWN).message
    services.report_message(user=people.aide, message_id=unkind.pk, category="bullying", note="")
    with scopes_disabled():
        case = Case.objects.get(message=unkind)
        event = AuditEvent.objects.get(action="message.sent", target_id=str(unkind.pk))
    assert (case.level, case.state, case.staff_conduct) == (1, "open", False)
    named = ("student", "teacher", "other_teacher", "aide", "moderator", "safeguarding_lead", "admin")
    personas: dict[str, User | None] = {name: getattr(people, name) for name in named}
    personas |= {"other_moderator": other_moderator, "other_school": outsider, "operator": operator}
    personas["anonymous"] = None
    assert tuple(sorted(personas)) == tuple(sorted(ROLES))
    message = _missing(Message)
    return World(
        people=people,
        personas=personas,
        room=room,
        classmate=classmate,
        real=Targets(room.pk, own.pk, unkind.pk, classmate.pk, case.pk, event.pk, school.sourced_id or ""),
        missing=Targets(
            room=_missing(Room),
            message=message,
            classmates_message=message + 1,
            classmate=_missing(User),
            case=_missing(Case),
            event=_missing(AuditEvent),
            school="nowhere-school",
        ),
    )


@pytest.fixture(scope="module")
def built(django_db_setup: None, django_db_blocker: Any) -> Iterator[World]:
    """The world, built once for the module in a transaction that is rolled back after its last test. Each
    test runs in a savepoint inside it (as with Django's `setUpTestData`), so every test starts from exactly
    this state and nothing one test does reaches another. Screening is off: it decides nothing about who
    may do what, and scoring each message would cost more than the rest of a test."""
    with django_db_blocker.unblock(), override_settings(COMMONROOM_SCREENERS=[]), transaction.atomic():
        yield build_world()
        transaction.set_rollback(True)


@pytest.fixture
def world(built: World, db: Any) -> World:
    return built


def snapshot(world: World) -> dict[str, Any]:
    """What any of the actions would change in the school, its audit log included (a refused look records
    nothing either). A safeguarding lead's socket records that they opened the room list: that is not an
    action of the matrix, and is left out."""
    real = world.real
    with scopes_disabled():
        return {
            "messages": list(Message.objects.filter(room=world.room).values_list("pk", "body", "state")),
            "mutes": Mute.objects.filter(room=world.room).count(),
            "lock": Room.objects.get(pk=real.room).locked_reason,
            "case": Case.objects.filter(pk=real.case).values("level", "state", "assignee").get(),
            "people": User.objects.filter(school=world.people.school).count(),
            "events": list(
                AuditEvent.objects.filter(school=world.people.school)
                .exclude(action="rooms.opened_by_safeguarding_lead")
                .values_list("action", flat=True)
            ),
        }


# -- over HTTP ------------------------------------------------------------------------------------------------

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"')


def client_for(user: User | None) -> Client:
    """A browser signed in as `user`; a reviewer has given their reason, which the review pages ask first, and
    so has an operator, whom the audit log asks."""
    client = Client()
    if user is not None:
        client.force_login(user)
        if review.may_review(user):
            assert client.post("/review/", {"reason": "concern", "text": ""}).status_code == 302
        if user.is_superuser and user.school_id is None:
            assert client.post("/admin/audit/auditevent/reason/", {"reason": "audit", "text": ""}).status_code == 302
    return client


def bundle(school: str) -> SimpleUploadedFile:
    """A OneRoster delta bundle naming `school` and adding one student to it."""
    files = {
        "manifest.csv": "propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\n"
        "file.orgs,delta\nfile.users,delta\n",
        "orgs.csv": f"sourcedId,status,dateLastModified,name,type\n{school},,,Matrix School,school\n",
        "users.csv": "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,givenName,familyName\n"
        f"m-new,,,true,{school},student,m.newcomer,New,Comer\n",
    }
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as handle:
        for name, text in files.items():
            handle.writestr(name, text)
    return SimpleUploadedFile("bundle.zip", archive.getvalue(), content_type="application/zip")


Request = Callable[[Client, Targets], "list[Response]"]


def case_step(step: str, **data: str) -> Request:
    return lambda client, t: [client.post(f"/cases/{t.case}/", {"step": step, **data})]


def read_room(client: Client, t: Targets) -> list[Response]:
    """The room page, after giving a reason: a moderator or the safeguarding lead, who are not its members, is
    asked for one first; a member is sent on to the page; anyone else gets the room that does not exist."""
    client.post(f"/rooms/{t.room}/", {"reason": "case", "text": ""})
    return [client.get(f"/rooms/{t.room}/")]


HTTP: dict[str, Request] = {
    "read": read_room,
    "remove": case_step("act", action="hide_message", reason="Unkind"),
    "mute": case_step("act", action="mute_author", reason="Unkind"),
    "lock": case_step("act", action="lock_room", reason="Calm down, everyone"),
    "read_case": lambda client, t: [client.get(f"/cases/{t.case}/")],
    "escalate": case_step("escalate", reason="Needs a head of year"),
    "search": lambda client, t: [client.get(f"/review/search/?text=lunch&room={t.room}")],
    "export": lambda client, t: [
        client.get(f"/review/export/cases/{t.case}/", {"format": "json"}),
        client.get(f"/review/export/people/{t.classmate}/", {"format": "json"}),
    ],
    "verify": lambda client, t: [
        client.get(f"/admin/audit/auditevent/{t.event}/change/"),
        client.get(f"/admin/audit/auditevent/{t.event}/history/"),
    ],
    "import": lambda client, t: [client.post("/admin/import-roster/", {"bundle": bundle(t.school)})],
}


def answer(response: Response, targets: Targets) -> tuple[int, str, str, str]:
    """What a response tells its reader: status, type, redirect and page, with the ids it was asked about
    (which the reader knows already) written as <id>, and without the CSRF token (new on every page)."""

    def plain(text: str) -> str:
        for word in targets.words():
            # Only where a page repeats what it was asked: a path segment, a query value, a form field's
            # value, a quoted name in a sentence; never a number that merely looks the same.
            found = rf"(/|%2F|[?&;][\w-]+=|%3D|value=\"|['“]|&#x27;){re.escape(word)}(?=/|%2F|&|%26|[\"'”]|$)"
            text = re.sub(found, r"\1<id>", text)
        return text

    body = CSRF.sub("", response.content.decode(errors="replace"))
    return response.status_code, response.get("Content-Type", ""), plain(response.get("Location", "")), plain(body)


def page(response: Response) -> str:
    return response.content.decode()


def moderation_done(action: str, world: World) -> None:
    """A removal, mute or lock took effect (over HTTP as a case's action, or on the socket)."""
    real = world.real
    if action == "remove":
        assert Message.objects.get(pk=real.classmates_message).state == Message.State.REMOVED
    elif action == "mute":
        assert Mute.objects.filter(room_id=real.room, user=world.classmate, ended__isnull=True).exists()
    else:
        assert Room.objects.get(pk=real.room).locked_reason == "Calm down, everyone"


def http_succeeded(action: str, world: World, found: list[Response]) -> None:
    """The action did what it says, rather than merely answering."""
    real, first = world.real, found[0]
    with scopes_disabled():
        if action == "read":
            assert first.status_code == 200
            assert world.people.school_class.title in page(first)
        elif action in ("remove", "mute", "lock", "escalate"):
            assert (first.status_code, first["Location"]) == (302, f"/cases/{real.case}/")
            if action == "escalate":
                assert Case.objects.get(pk=real.case).level == 2
            else:
                moderation_done(action, world)
        elif action == "read_case":
            assert first.status_code == 200
            assert UNKIND in page(first)
        elif action == "search":
            assert first.status_code == 200
            assert OWN in page(first)
        elif action == "export":
            assert [(r.status_code, r["Content-Type"]) for r in found] == [(200, "application/zip")] * 2
            assert zipfile.ZipFile(io.BytesIO(first.content)).namelist() == ["case.json", "manifest.json"]
        elif action == "verify":
            assert [r.status_code for r in found] == [200, 200]
            assert AuditEvent.objects.get(pk=real.event).hash in page(first)
        elif action == "import":
            assert first.status_code == 200
            assert first.context["result"]["users"]["created"] == 1
            assert User.objects.get(username="m.newcomer").school_id == world.people.school.pk
        else:
            pytest.fail(f"no check that {action} worked over HTTP")


ADMIN_REFUSALS = ("/admin/login/?next=", "/admin/")


def refused_over_http(role: str, action: str, found: list[Response]) -> None:
    """What a refusal looks like. Signed out: the sign-in page. Someone of another school on a page their
    own school lets them use (the review search, the roster import): their school's page, showing nothing
    of this school. Anyone else: not found, forbidden, the admin's sign-in, or the admin's own answer to
    an object that does not exist (back to its index)."""
    for response in found:
        location = response.get("Location", "")
        if role == "anonymous":
            assert response.status_code == 302
            assert location.startswith(("/login/?next=", "/admin/login/?next="))
        elif role == "other_school" and action == "search":
            assert "Nothing matches." in page(response)
        elif role == "other_school" and action == "import":
            assert "is not your school" in page(response)
        else:
            assert response.status_code in (403, 404) or location.startswith(ADMIN_REFUSALS), response


@pytest.mark.parametrize(("role", "action"), pairs("http"))
def test_http(world: World, role: str, action: str) -> None:
    """Allowed: the action works. Refused: nothing changes, and the answer about the real id is the answer
    about an id that does not exist."""
    client, act = client_for(world.personas[role]), HTTP[action]
    if allowed(role, action):
        http_succeeded(action, world, act(client, world.real))
        return
    before = snapshot(world)
    found = act(client, world.real)
    missing = act(client, world.missing)
    assert [answer(r, world.real) for r in found] == [answer(r, world.missing) for r in missing], (
        "a refused id must get the answer of an id that does not exist"
    )
    refused_over_http(role, action, found)
    assert snapshot(world) == before


# -- over the socket ---------------------------------------------------------------------------------------

BARRIER = {"type": "matrix_barrier"}  # no such frame: its error marks the end of the answer to the one before


def frames(action: str, t: Targets) -> list[dict[str, Any]]:
    client_id = "00000000-0000-4000-8000-000000000001"
    return {
        "read": [
            {"type": "look", "room": t.room, "reason": "case"},  # those who read it from outside give a reason first
            {"type": "sync", "room": t.room, "after": 0},
            {"type": "history", "room": t.room, "before": 100},
        ],
        "post": [{"type": "send", "room": t.room, "client_id": client_id, "body": "Hello, room"}],
        "edit": [{"type": "edit", "message": t.message, "body": "See you at break"}],
        "remove": [{"type": "delete", "message": t.classmates_message, "reason": "Unkind"}],
        "mute": [{"type": "mute", "room": t.room, "user": t.classmate, "reason": "Unkind"}],
        "lock": [{"type": "lock", "room": t.room, "reason": "Calm down, everyone"}],
        "report": [{"type": "report", "message": t.classmates_message, "category": "bullying", "note": ""}],
    }[action]


@dataclass
class Conversation:
    refused: int | None  # the close code, if the socket was refused
    rooms: list[int]  # the rooms `ready` listed
    answers: list[list[dict[str, Any]]]  # for each frame sent, every frame that answered it


def converse(user: User | None, sent: list[dict[str, Any]]) -> Conversation:
    """Open a socket as `user`, send each frame, and collect what comes back for each."""

    async def run() -> Conversation:
        communicator = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/")
        communicator.scope["user"] = user if user is not None else AnonymousUser()
        connected, code = await communicator.connect()
        if not connected:
            return Conversation(refused=code, rooms=[], answers=[])
        ready = await communicator.receive_json_from()
        assert ready["type"] == "ready"
        answers = []
        for frame in sent:
            await communicator.send_json_to(frame)
            await communicator.send_json_to(BARRIER)
            replies = []
            while (reply := await communicator.receive_json_from()).get("code") != "unknown_type":
                replies.append(reply)
            answers.append(replies)
        await communicator.disconnect()
        return Conversation(refused=None, rooms=[room["id"] for room in ready["rooms"]], answers=answers)

    return async_to_sync(run)()


@pytest.fixture
def sockets_in_the_test_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run under async_to_sync, the consumer's database work happens in the test's own thread, inside the
    test's transaction. Channels closes "old" connections around that work, which inside a transaction
    would close the test's own; Django's test client skips the same clean-up around requests, and so does
    this. (Live events go out after commit, so they never do here: the checks read the database.)"""
    monkeypatch.setattr("channels.db.close_old_connections", lambda: None)


def socket_succeeded(action: str, world: World, talk: Conversation) -> None:
    real = world.real
    assert real.room in talk.rooms
    for replies in talk.answers:
        assert [r for r in replies if r["type"] == "error"] == []
    with scopes_disabled():
        if action == "read":
            looked, *pages = talk.answers
            assert looked == [{"type": "looking", "room": real.room}]
            for replies in pages:
                assert [r["type"] for r in replies] == ["history"]
                assert {real.message, real.classmates_message} <= {m["id"] for m in replies[0]["messages"]}
        elif action == "post":
            (ack,) = talk.answers[0]
            assert ack["type"] == "ack"
            assert Message.objects.get(pk=ack["message"]["id"]).body == "Hello, room"
        elif action == "edit":
            assert Message.objects.get(pk=real.message).body == "See you at break"
        elif action in ("remove", "mute", "lock"):
            moderation_done(action, world)
        elif action == "report":
            assert talk.answers == [[{"type": "reported", "message": real.classmates_message}]]
            reports = AuditEvent.objects.filter(action="message.reported", target_id=str(real.classmates_message))
            assert reports.count() == 2  # the aide's, from the fixture, and this one
        else:
            pytest.fail(f"no check that {action} worked on the socket")


@pytest.mark.usefixtures("sockets_in_the_test_transaction")
@pytest.mark.parametrize(("role", "action"), pairs("socket"))
def test_socket(world: World, role: str, action: str) -> None:
    """Allowed: the action works. Refused: nothing changes; someone who reads the room is told why in the
    action's stable code; anyone else gets the answer about an id that does not exist, and never sees the
    room listed. Signed out: the socket itself is refused."""
    user = world.personas[role]
    if allowed(role, action):
        socket_succeeded(action, world, converse(user, frames(action, world.real)))
        return
    before = snapshot(world)
    talk = converse(user, frames(action, world.real))
    if user is None:
        assert (talk.refused, talk.answers) == (CLOSE_UNAUTHENTICATED, [])
        assert converse(user, frames(action, world.missing)).refused == CLOSE_UNAUTHENTICATED
    elif told_why(role, action, "socket"):
        assert world.real.room in talk.rooms
        for replies in talk.answers:
            assert [(r["type"], r["code"]) for r in replies] == [("error", REFUSAL[action])]
    else:
        assert world.real.room not in talk.rooms
        assert talk.answers == converse(user, frames(action, world.missing)).answers
        for replies in talk.answers:
            (error,) = replies
            assert (error["type"], error["code"]) in {("error", "room_not_found"), ("error", "message_not_found")}
    assert snapshot(world) == before


# -- the table itself ----------------------------------------------------------------------------------------


def test_the_table_has_an_answer_for_every_role_and_action() -> None:
    """Every role has a yes or a no for every action, and every action a way in with a check behind it."""
    assert tuple(MATRIX) == ROLES
    assert all(len(row) == len(ACTIONS) and all(isinstance(cell, bool) for cell in row) for row in MATRIX.values())
    assert tuple(ENTRY_POINTS) == ACTIONS
    assert all(set(ways) <= {"http", "socket"} and ways for ways in ENTRY_POINTS.values())
    assert set(HTTP) == {action for action, ways in ENTRY_POINTS.items() if "http" in ways}
    for action, ways in ENTRY_POINTS.items():
        if "socket" in ways:
            assert frames(action, EXAMPLE)
    assert len(pairs("http")) + len(pairs("socket")) == len(ROLES) * sum(len(ways) for ways in ENTRY_POINTS.values())


EXAMPLE = Targets(room=1, message=2, classmates_message=3, classmate=4, case=5, event=6, school="s")


def test_every_frame_the_consumer_handles_is_covered() -> None:
    """A frame type the consumer handles is sent by the matrix, or goes through the same check as an action
    the matrix sends; a new frame type must be added to one or the other. The pages the matrix asks for
    are routed."""
    socket = [action for action, ways in ENTRY_POINTS.items() if "socket" in ways]
    sent = {frame["type"] for action in socket for frame in frames(action, EXAMPLE)}
    assert set(HANDLERS) == sent | set(OTHER_FRAMES)
    assert not sent & set(OTHER_FRAMES)
    assert set(OTHER_FRAMES.values()) <= set(socket) | {""}
    for path in (
        "/rooms/1/",
        "/cases/1/",
        "/review/search/",
        "/review/export/cases/1/",
        "/review/export/people/1/",
        "/admin/audit/auditevent/1/change/",
        "/admin/audit/auditevent/1/history/",
        "/admin/import-roster/",
    ):
        resolve(path)


# -- places in rooms: nobody gives themself one, nobody gives one that does not fit ---------------------------

PLACES: dict[str, Callable[[int, World], tuple[str, dict[str, Any]]]] = {
    # what is tried in the admin, and where a refused form would have written it
    "enrol_self": lambda me, w: ("/admin/classes/enrollment/add/", {"school_class": w.people.school_class.pk,
                                                                     "user": me, "role": "aide"}),
    "attach_self": lambda me, w: ("/admin/classes/cohortstaff/add/", {"cohort": w.people.cohort.pk, "user": me}),
    "enrol_student_as_aide": lambda me, w: ("/admin/classes/enrollment/add/", {"school_class": w.people.other_class.pk,
                                                                                "user": w.people.student.pk,
                                                                                "role": "aide"}),
}  # fmt: skip


@pytest.mark.parametrize("attempt", sorted(PLACES))
@pytest.mark.parametrize("role", ROLES)
def test_self_and_cross_role_enrolment(world: World, role: str, attempt: str) -> None:
    """A row of the matrix that no role may do: every role is refused, and nothing is written. Those who may
    provision see the form again with the reason; everyone else is turned away from the admin."""
    user = world.personas[role]
    me = user.pk if user is not None else world.people.teacher.pk
    before = snapshot(world)
    with scopes_disabled():
        places = (Enrollment.objects.count(), CohortStaff.objects.count())
    url, data = PLACES[attempt](me, world)
    response = client_for(user).post(url, data)
    with scopes_disabled():
        assert (Enrollment.objects.count(), CohortStaff.objects.count()) == places
    assert snapshot(world) == before
    if role in ("admin", "operator", "other_school"):  # those who provision a school (the other one's, too)
        assert response.status_code == 200
        assert "errornote" in page(response) or "errorlist" in page(response)
    else:
        assert response.status_code in (302, 403)
        assert response.status_code == 403 or "/admin/login/" in response["Location"]
