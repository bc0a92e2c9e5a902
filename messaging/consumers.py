"""The one WebSocket of a browser tab, at /ws/ (docs/protocol.md is its reference).

The consumer parses a frame, asks a service (which asks the policy) in one
`database_sync_to_async` call, and replies. It never touches the ORM itself
and never trusts a user id or role sent in a frame. Group names are built
from database ids only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from importlib import import_module
from typing import Any

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from messaging import policy, services
from messaging.sockets import SocketCount

logger = logging.getLogger(__name__)

MAX_FRAME = 16 * 1024  # characters: a 4,000-character message with room to spare
RATE = 5.0  # frames per second, sustained
BURST = 20.0  # frames at once
STRIKES = 3  # rate-limited frames before the socket is closed
STRIKE_MEMORY = 60.0  # seconds after which earlier strikes are forgotten
COOL_DOWN = 30.0  # seconds for which a person whose socket was closed for flooding may not open another
REFUSAL_DELAY = 1.0  # seconds before such a socket is refused

CLOCK_MARGIN = 0.05  # seconds after a clock change before the state is worked out again
NEW_DAY_SPREAD = 60.0  # seconds over which a school's sockets re-read their rooms when a new day begins
CLOCK_STATES = {policy.State.OPEN.value, policy.State.QUIET_HOURS.value}  # the states the clock decides between

SESSION_RECHECK = 60.0  # seconds between checks that a long-lived socket's session still holds
MAX_SOCKETS = 10  # open sockets per person, across all server processes (tabs and devices)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FLOODING = 4429
CLOSE_SIGNED_OUT = 4408
CLOSE_TOO_MANY = 4409
CLOSE_TRY_AGAIN = 4503  # the database cannot be reached: try again later (daphne refuses 1013 itself)

# What the database driver raises when the database cannot be reached (stopped, restarting, the
# network cut): the action did not happen, or (if the connection broke as it committed) it did and
# a retry with the same client id finds it. Either way the client is told to try again.
UNREACHABLE = (OperationalError, InterfaceError)

# People (by id) and sessions (by key) whose socket this process closed for flooding, and until when
# their new sockets are refused: a script that reconnects at once after each close would otherwise get
# a fresh burst of frames, each a database write, every time. A refused session costs no database
# query at all (`CoolingDownGuard` refuses it before the session is read).
_cooling_down: dict[int | str, float] = {}


def cooling_down(key: int | str) -> bool:
    return _cooling_down.get(key, 0.0) > time.monotonic()


class CoolingDownGuard:
    """ASGI middleware between the cookie and session middlewares: refuses (403) a socket whose
    session cookie names a session closed for flooding a moment ago, before the session is read, and
    only after REFUSAL_DELAY, so that a script reconnecting in a loop is slowed to one try a second
    per connection (a flood of new connections is for the proxy's limits: docs/operations.md)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        key = scope.get("cookies", {}).get(settings.SESSION_COOKIE_NAME)
        if scope["type"] == "websocket" and key and cooling_down(key):
            await receive()  # websocket.connect
            await asyncio.sleep(REFUSAL_DELAY)  # a script retrying in a loop waits for each answer
            await send({"type": "websocket.close", "code": CLOSE_FLOODING})
            return None
        return await self.inner(scope, receive, send)


# The sockets each person has open, across processes (through Redis when there is one). A socket's
# place is renewed at every session re-check; one left by a killed process lapses after three.
open_sockets = SocketCount(lease=3 * SESSION_RECHECK)


def room_group(room_id: int) -> str:
    return f"room.{int(room_id)}"


def user_group(user_id: int) -> str:
    return f"user.{int(user_id)}"


RATE_LIMITED = json.dumps(
    {"type": "error", "code": "rate_limited", "detail": "You are sending too fast; wait a moment."},
    separators=(",", ":"),
)


class FrameGate:
    """The rate limit, applied to a socket's frames as they arrive rather than as the consumer gets
    to them. The consumer takes one frame at a time and waits for the database on many; daphne queues
    whatever arrives meanwhile without limit, so a limit applied in the consumer would only see a
    flood seconds late, after reading it all. The gate reads the server's messages in a task of its
    own as fast as they come: a token bucket per socket (RATE frames a second, BURST at once) lets
    frames through to the consumer, answers the others `rate_limited`, and at the STRIKES-th refusal
    closes the socket (4429) at once and drops everything else it sends. Strikes are forgiven after
    a quiet STRIKE_MEMORY seconds. What waits for the consumer is bounded by the bucket."""

    def __init__(self, receive: Any, send: Any, flooded: Any) -> None:
        self.upstream, self.send, self.flooded = receive, send, flooded
        self.waiting: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.tokens, self.checked, self.strikes, self.last_strike = BURST, time.monotonic(), 0, 0.0
        self.closed = False
        self.task = asyncio.ensure_future(self._pump())

    async def receive(self) -> dict[str, Any]:
        return await self.waiting.get()

    def stop(self) -> None:
        self.task.cancel()

    def _allowed(self, moment: float) -> bool:
        if self.strikes and moment - self.last_strike > STRIKE_MEMORY:
            self.strikes = 0
        self.tokens = min(BURST, self.tokens + (moment - self.checked) * RATE)
        self.checked = moment
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    async def _pump(self) -> None:
        while True:
            message = await self.upstream()
            if message["type"] != "websocket.receive":
                self.waiting.put_nowait(message)
                if message["type"] == "websocket.disconnect":
                    return
                continue
            if self.closed:
                continue  # closed for flooding: what it sends before the connection goes is dropped unread
            moment = time.monotonic()
            if self._allowed(moment):
                self.waiting.put_nowait(message)
                continue
            self.strikes += 1
            self.last_strike = moment
            if self.strikes >= STRIKES:
                self.closed = True
                self.flooded()
                await self.send({"type": "websocket.close", "code": CLOSE_FLOODING})
            else:
                await self.send({"type": "websocket.send", "text": RATE_LIMITED})


class ChatConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels ships no type information
    user: Any
    rooms: dict[int, dict[str, Any]]
    looks: dict[int, services.Look]  # the rooms this socket reads from outside, after a `look` at each

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        gate = FrameGate(receive, send, self._flooded)
        try:
            await super().__call__(scope, gate.receive, send)
        finally:
            gate.stop()

    def _flooded(self) -> None:
        """Refuse this person's and this session's new sockets in this process for COOL_DOWN seconds."""
        if getattr(self, "user", None) is None:
            return
        moment = time.monotonic()
        for key in [k for k, until in _cooling_down.items() if until <= moment]:
            del _cooling_down[key]
        _cooling_down[self.user.pk] = moment + COOL_DOWN
        session_key = getattr(self.scope.get("session"), "session_key", None)
        if session_key:
            _cooling_down[session_key] = moment + COOL_DOWN

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if cooling_down(user.pk):
            await self.close(code=CLOSE_FLOODING)
            return
        self.user = user
        self.rooms = {}
        self.looks = {}
        await self.accept()
        if not await open_sockets.claim(user.pk, self.channel_name, limit=MAX_SOCKETS):
            await self._error("too_many_sockets", f"You have {MAX_SOCKETS} windows open already; close one first.")
            await self.close(code=CLOSE_TOO_MANY)
            self.user = None  # nothing to undo at disconnect
            return
        await self.channel_layer.group_add(user_group(user.pk), self.channel_name)
        try:
            await self._refresh_rooms()
        except UNREACHABLE:
            logger.warning("a socket was refused: the database cannot be reached")
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        self.watch = asyncio.ensure_future(self._watch_session())

    async def disconnect(self, code: int) -> None:
        if getattr(self, "user", None) is None:
            return
        await open_sockets.release(self.user.pk, self.channel_name)
        for task in (getattr(self, "watch", None), getattr(self, "clock", None)):
            if task is not None:
                task.cancel()
        for room_id in list(getattr(self, "rooms", {})):
            await self.channel_layer.group_discard(room_group(room_id), self.channel_name)
        await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)

    async def _watch_session(self) -> None:
        """Every SESSION_RECHECK seconds (the first time at a random point of the first interval, so
        that sockets opened together are not checked together), ask whether the session the socket
        was opened with still signs this person in: not expired or deleted, the same password, the
        account active. Signing out, a new password, disabling and suspending also close sockets at
        once (`session_ended`); this catches the rest, such as a session that simply expired."""
        await asyncio.sleep(random.uniform(0.5, 1.5) * SESSION_RECHECK)  # noqa: S311  (jitter, not secrecy)
        while True:
            try:
                if not await self._still_signed_in():
                    break
                await open_sockets.renew(self.user.pk, self.channel_name)
            except UNREACHABLE:  # the database is away: ask again next time, rather than close every socket
                logger.warning("a session could not be re-checked: the database cannot be reached")
            await asyncio.sleep(SESSION_RECHECK)
        await self.close(code=CLOSE_SIGNED_OUT)

    async def _still_signed_in(self) -> bool:
        """The session read afresh from its store, and the person from it as Django's own sign-in
        check finds them (the password's hash in the session must still match, the account active)."""
        key = getattr(self.scope.get("session"), "session_key", None)
        if key is None:
            return True  # a socket opened without a session cookie (tests that set the user directly)
        stored = import_module(settings.SESSION_ENGINE).SessionStore(session_key=key)
        user = await get_user({"session": stored})
        return bool(user.is_authenticated and user.pk == self.user.pk and user.is_active)

    async def _refresh_rooms(self) -> None:
        """Join the groups of every room the user may read now, leave the others, and say so."""
        listed, policy, self.school = await database_sync_to_async(self._ready)()
        now = {room["id"]: room for room in listed}
        for room_id in set(self.rooms) - set(now):
            await self.channel_layer.group_discard(room_group(room_id), self.channel_name)
            self.looks.pop(room_id, None)
            await self._send({"type": "room_removed", "room": room_id})
        for room_id in set(now) - set(self.rooms):
            await self.channel_layer.group_add(room_group(room_id), self.channel_name)
        self.rooms = now
        await self._send({"type": "ready", "rooms": listed, "policy": policy})
        if (clock := getattr(self, "clock", None)) is not None:
            clock.cancel()
        self.clock = asyncio.ensure_future(self._watch_clock())

    def _ready(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None, Any]:
        """One unit of work in the sync thread: the rooms, the acceptable-use policy, and the school
        (whose clock the socket then keeps)."""
        with policy.remembering():
            return services.ready(user=self.user), services.policy_status(self.user), services.school_of(self.user)

    async def _watch_clock(self) -> None:
        """Quiet hours start and end, and days begin, with nobody doing anything. At each such moment
        (`policy.next_clock_change`) the socket tells its tab the new state of its rooms that the clock
        decides (`policy.on_the_clock`: open or quiet hours), from what it already knows, without the
        database; on a new day it re-reads its rooms (enrollments begin and end by date), at a random
        moment of the first minute so that a school's sockets do not all ask at once."""
        school = self.school
        if school is None:
            return
        while True:
            now = timezone.now()
            moment = policy.next_clock_change(school, now)
            await asyncio.sleep(max(0.0, (moment - now).total_seconds()) + CLOCK_MARGIN)
            if policy.school_day(school, timezone.now()) != policy.school_day(school, now):
                await asyncio.sleep(random.uniform(0, NEW_DAY_SPREAD))  # noqa: S311  (spread, not secrecy)
                await self._refresh_rooms()  # starts a new clock
                return
            await self._apply_clock(policy.on_the_clock(school, timezone.now()))

    async def _apply_clock(self, clock: policy.RoomState) -> None:
        for room_id, room in self.rooms.items():
            if room["state"] in CLOCK_STATES and room["state"] != clock.state.value:
                room["state"], room["reason"] = clock.state.value, clock.reason
                await self._send(
                    {"type": "room_state", "room": room_id, "state": room["state"], "reason": clock.reason}
                )

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame, separators=(",", ":")))

    async def _error(self, code: str, detail: str, client_id: Any = None) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "detail": detail}
        if client_id is not None and isinstance(client_id, str) and len(client_id) <= 64:
            frame["client_id"] = client_id
        await self._send(frame)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self._error("invalid_frame", "Frames are JSON text.")
            return
        if len(text_data) > MAX_FRAME:
            await self._error("frame_too_large", f"A frame can be at most {MAX_FRAME} characters long.")
            return
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):
            await self._error("invalid_json", "That frame is not valid JSON.")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self._error("invalid_frame", "A frame is a JSON object with a type.")
            return
        handler = HANDLERS.get(frame["type"])
        if handler is None:
            await self._error("unknown_type", "That frame type does not exist.")
            return
        try:
            await handler(self, frame)
        except services.MessagingError as exc:
            await self._error(exc.code, exc.detail, frame.get("client_id") if frame["type"] == "send" else None)
        except UNREACHABLE:
            logger.warning("frame %s failed: the database cannot be reached", frame["type"])
            await self._error(
                "unavailable",
                "Commonroom cannot reach its database just now; try again in a moment (sending again is safe).",
                frame.get("client_id"),
            )
        except Exception:  # a bug must cost one frame an error, not the socket
            logger.exception("frame %s failed", frame["type"])
            await self._error("server_error", "Something went wrong on our side; try again.", frame.get("client_id"))

    # -- client frames ----------------------------------------------------------------

    async def on_send(self, frame: dict[str, Any]) -> None:
        sent = await database_sync_to_async(services.send_message)(
            user=self.user, room_id=frame.get("room"), client_id=frame.get("client_id"), body=frame.get("body")
        )
        await self._send(
            {
                "type": "ack",
                "client_id": str(sent.message.client_id),
                "message": services.serialize(sent.message, self.user),
            }
        )

    async def on_edit(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(services.edit_message)(
            user=self.user, message_id=frame.get("message"), body=frame.get("body")
        )

    async def on_delete(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(services.remove_message)(
            user=self.user, message_id=frame.get("message"), reason=frame.get("reason")
        )

    async def on_sync(self, frame: dict[str, Any]) -> None:
        page = await database_sync_to_async(services.sync)(
            user=self.user, room_id=frame.get("room"), after=frame.get("after"), look=self._look(frame)
        )
        await self._send_page(page, after=frame["after"])

    async def on_history(self, frame: dict[str, Any]) -> None:
        page = await database_sync_to_async(services.history)(
            user=self.user, room_id=frame.get("room"), before=frame.get("before"), look=self._look(frame)
        )
        await self._send_page(page, before=frame["before"])

    def _look(self, frame: dict[str, Any]) -> services.Look | None:
        room_id = policy.as_id(frame.get("room"))
        return None if room_id is None else self.looks.get(room_id)

    async def _send_page(self, page: services.Page, **asked: int) -> None:
        """A `history` frame, saying which position it answers (`after` for sync, `before` for history)."""
        if page.look is not None:
            self.looks[page.room] = page.look  # its subjects now include the authors of this page
        await self._send({"type": "history", "room": page.room, **asked, "messages": page.messages, "more": page.more})

    async def on_look(self, frame: dict[str, Any]) -> None:
        """A moderator or the safeguarding lead says why they read a room they are not a member of: from
        now on, for this socket's life, its pages and live messages reach them."""
        room_id, look = await database_sync_to_async(services.look_at_room)(
            user=self.user, room_id=frame.get("room"), reason=frame.get("reason"), reason_text=frame.get("reason_text")
        )
        if look is not None:
            self.looks[room_id] = look
        await self._send({"type": "looking", "room": room_id})

    async def on_read(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(services.mark_read)(
            user=self.user, room_id=frame.get("room"), up_to=frame.get("up_to")
        )

    async def on_open(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(services.set_room_open)(user=self.user, room_id=frame.get("room"), opened=True)

    async def on_close(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(services.set_room_open)(user=self.user, room_id=frame.get("room"), opened=False)

    async def on_lock(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(services.lock_room)(
            user=self.user, room_id=frame.get("room"), reason=frame.get("reason")
        )

    async def on_unlock(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(services.unlock_room)(
            user=self.user, room_id=frame.get("room"), reason=frame.get("reason")
        )

    async def on_mute(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(services.mute)(
            user=self.user, room_id=frame.get("room"), student_id=frame.get("user"), reason=frame.get("reason")
        )

    async def on_unmute(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(services.unmute)(
            user=self.user, room_id=frame.get("room"), student_id=frame.get("user"), reason=frame.get("reason")
        )

    async def on_report(self, frame: dict[str, Any]) -> None:
        message = await database_sync_to_async(services.report_message)(
            user=self.user, message_id=frame.get("message"), category=frame.get("category"), note=frame.get("note")
        )
        await self._send({"type": "reported", "message": message.pk})

    async def on_accept_policy(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(services.accept_policy)(user=self.user, version=frame.get("version"))
        await self._refresh_rooms()

    # -- events from the channel layer --------------------------------------------------

    async def room_event(self, event: dict[str, Any]) -> None:
        room_id = event["room"]
        if room_id not in self.rooms:
            return  # left the room since the event was sent
        private_to = event.get("private_to")
        if private_to is not None and private_to != self.user.pk and not self.rooms[room_id].get("moderator"):
            return  # a held message, a mute: for one person and the room's moderators only
        not_for = event.get("not_for")
        if not_for is not None and (not_for == self.user.pk or self.rooms[room_id].get("moderator")):
            return  # a message withheld after an edit: for everyone else (its author and the moderators have the edit)
        if "state" in event:  # a room_state: the clock goes on from the new state
            self.rooms[room_id]["state"], self.rooms[room_id]["reason"] = event["state"], event["reason"]
        if self.rooms[room_id].get("reason_required") and room_id not in self.looks and _about_messages(event):
            return  # read from outside the room, and no reason given on this socket yet
        await self.send(text_data=event["text"])

    async def user_frame(self, event: dict[str, Any]) -> None:
        """A frame for this person from a layer above messaging (a staff `alert`, a case update)."""
        await self.send(text_data=event["text"])

    async def rooms_changed(self, event: dict[str, Any]) -> None:
        await self._refresh_rooms()

    async def session_ended(self, event: dict[str, Any]) -> None:
        await self.close(code=CLOSE_SIGNED_OUT)


def _about_messages(event: dict[str, Any]) -> bool:
    """Does a room event show messages (`message`, `message_edited`, `message_removed`,
    `message_withheld`)? Parsed only for the few sockets that read a room from outside without a look."""
    try:
        kind = json.loads(event["text"]).get("type")
    except (ValueError, AttributeError):
        return True
    return not isinstance(kind, str) or kind.startswith("message")


HANDLERS = {
    "send": ChatConsumer.on_send,
    "edit": ChatConsumer.on_edit,
    "delete": ChatConsumer.on_delete,
    "sync": ChatConsumer.on_sync,
    "history": ChatConsumer.on_history,
    "read": ChatConsumer.on_read,
    "open": ChatConsumer.on_open,
    "close": ChatConsumer.on_close,
    "lock": ChatConsumer.on_lock,
    "unlock": ChatConsumer.on_unlock,
    "mute": ChatConsumer.on_mute,
    "unmute": ChatConsumer.on_unmute,
    "accept_policy": ChatConsumer.on_accept_policy,
    "report": ChatConsumer.on_report,
    "look": ChatConsumer.on_look,
}
