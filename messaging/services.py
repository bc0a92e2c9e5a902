"""Messaging actions: send, edit, delete and remove, read, and the pages a client asks for.

Each action authorizes through `messaging.policy`, then writes its change and
its audit event in one transaction; live events are published only after the
transaction commits (`publish`), so nobody hears of a message that is not
saved. Sending is idempotent per author and client id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string
from django_scopes import scopes_disabled

from audit import looks
from audit.services import audited, record
from classes.models import School, User
from commonroom.db import next_number
from messaging import policy
from messaging.models import AcceptableUsePolicy, Message, Mute, PolicyAcceptance, ReadPosition, Room
from messaging.signals import message_reported, message_screened
from messaging.text import is_blank, tidy, without_bidi_controls

PAGE = 50


class MessagingError(Exception):
    """A refused action: a stable code and a sentence a person can read."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class MessageNotFound(MessagingError):
    def __init__(self) -> None:
        super().__init__("message_not_found", "There is no such message.")


def _room(user: User, room_id: Any, now: datetime) -> Room:
    try:
        return policy.room_for(user, room_id, now)
    except policy.RoomNotFound:
        raise MessagingError("room_not_found", "There is no such room.") from None


# -- screening ---------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What a screener says of a message: allow, flag (deliver and report), hold (author and moderators only
    until reviewed) or reject (not posted, with a reason for the sender)."""

    action: str = "allow"
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # what its author is answered at once, privately (a cry for help: where to find help)


SEVERITY = {"allow": 0, "flag": 1, "hold": 2, "reject": 3}
Screener = Callable[[str, Room, User], Verdict]


def screeners() -> list[Screener]:
    """The screeners named in the COMMONROOM_SCREENERS setting (none by default; moderation/ adds one)."""
    return [import_string(path) for path in settings.COMMONROOM_SCREENERS]


def folded_for_search(body: str) -> str:
    """The body as search reads it (COMMONROOM_SEARCH_FOLDER, which moderation/ provides), or "" without one."""
    path = settings.COMMONROOM_SEARCH_FOLDER
    return str(import_string(path)(body)) if path else ""


def screen(body: str, room: Room, author: User) -> Verdict:
    """The gravest verdict of the screeners (an "allow" that found something beats a plain one, so that
    what it found is recorded)."""
    verdict = Verdict()
    for screener in screeners():
        answer = screener(body, room, author)
        if (SEVERITY[answer.action], bool(answer.details)) > (SEVERITY[verdict.action], bool(verdict.details)):
            verdict = answer
    return verdict


def _may_say(user: User, room: Room, text: str, now: datetime) -> Verdict:
    """May `user` say `text` in `room` now (a send, or an edit that says something new)? The screening verdict if so."""
    refusal = policy.posting_refusal(user, room, now)
    if refusal is not None:
        raise MessagingError(refusal.code, refusal.detail)
    verdict = screen(text, room, user)
    if verdict.action == "reject":
        raise MessagingError("rejected", verdict.reason or "This message cannot be posted.")
    return verdict


def _screened(message: Message, room: Room, verdict: Verdict) -> None:
    """Tell the layers above (inside the transaction) that screening flagged or held a message."""
    if verdict.action in ("flag", "hold"):
        message_screened.send(sender=Message, message=message, room=room, verdict=verdict)


# -- live events --------------------------------------------------------------------

Publisher = Callable[[Room, dict[str, Any]], None]
_publishers: list[Publisher] = []


def subscribe(publisher: Publisher) -> None:
    """The socket layer registers how to deliver live events; services never import it."""
    if publisher not in _publishers:
        _publishers.append(publisher)


def publish(room: Room, event: dict[str, Any]) -> None:
    """Deliver `event` to the room's sockets once the current transaction has committed. If the channel
    layer fails (Redis away), the action still stands and is answered as done: the failure is logged,
    and clients fill the gap in the room's sequence numbers with `sync`."""

    def deliver() -> None:
        for publisher in _publishers:
            publisher(room, event)

    transaction.on_commit(deliver, robust=True)


# -- what a person sees ----------------------------------------------------------------


def serialize(message: Message, viewer: User | None = None) -> dict[str, Any]:
    """A message as the protocol shows it. A removed message shows a notice, never its text."""
    author = message.author
    data: dict[str, Any] = {
        "id": message.pk,
        "room": message.room_id,
        "seq": message.seq,
        "author": {"id": author.pk, "name": author.full_name or author.username, "role": author.role},
        "created": message.created.isoformat(),
        "edited": message.edited.isoformat() if message.edited else None,
        "state": message.state,
        "body": message.body if message.state != Message.State.REMOVED else "",
    }
    if message.state == Message.State.REMOVED:
        data["removed_reason"] = message.removed_reason
        data["removed_by"] = "author" if message.removed_by_id == message.author_id else "staff"
    if viewer is not None and message.client_id and viewer.pk == message.author_id:
        data["client_id"] = str(message.client_id)
    if message.author_note and (viewer.pk == message.author_id if viewer is not None else message.withheld):
        # The system's answer to its author: in their own copies, and in live events of a message only its
        # author and the room's moderators receive (withheld); never in the room's once it is approved.
        data["note"] = message.author_note
    return data


def _visible(messages: Any, user: User, room: Room, moderator: bool | None = None) -> Any:
    """Withheld messages (held, or held and then removed) are for their author and the room's moderators only."""
    if moderator if moderator is not None else policy.is_moderator_of(user, room):
        return messages
    return messages.exclude(Q(withheld=True) & ~Q(author=user))


# -- actions -----------------------------------------------------------------------------


def check_body(body: Any) -> str:
    """The body as it will be stored and shown: without bidi controls, and refused as empty when
    nothing of it would show (`messaging.text`)."""
    if not isinstance(body, str):
        raise MessagingError("invalid_body", "A message is text.")
    text = without_bidi_controls(body)
    if is_blank(text):
        raise MessagingError("empty_body", "A message cannot be empty.")
    if len(text) > Message.MAX_LENGTH:
        raise MessagingError("body_too_long", f"A message can be at most {Message.MAX_LENGTH} characters long.")
    if "\x00" in text:
        raise MessagingError("invalid_body", "A message cannot contain a NUL character.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MessagingError("invalid_body", "A message must be valid Unicode text.") from None
    return text


def check_client_id(client_id: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(client_id))
    except ValueError:
        raise MessagingError("invalid_client_id", "client_id must be a UUID.") from None


REASON_MAX = 500


def _reason(reason: Any, detail: str) -> str:
    """A reason a person must give: text of 1 to REASON_MAX characters; `detail` says what is asked."""
    text = "" if reason is None else tidy(str(reason))
    if not text or len(text) > REASON_MAX:
        raise MessagingError("reason_required", detail)
    return text


def _optional_reason(reason: Any) -> str:
    text = "" if reason is None else tidy(str(reason))
    if len(text) > REASON_MAX:
        raise MessagingError("reason_too_long", f"A reason can be at most {REASON_MAX} characters long.")
    return text


@dataclass(frozen=True)
class Sent:
    message: Message
    created: bool  # False: a resend of a message already saved


def send_message(*, user: User, room_id: Any, client_id: Any, body: Any, now: datetime | None = None) -> Sent:
    """Save a message (or find the one this client id already saved) and publish it after commit."""
    now = now or timezone.now()
    text = check_body(body)
    cid = check_client_id(client_id)
    room = _room(user, room_id, now)
    with scopes_disabled():
        earlier = Message.objects.select_related("author").filter(author=user, client_id=cid).first()
    if earlier is not None:
        if earlier.room_id != room.pk:
            raise MessagingError("client_id_reused", "This client_id was already used for another room.")
        return Sent(earlier, created=False)
    verdict = _may_say(user, room, text, now)
    try:
        with audited(room.school_id), scopes_disabled():
            seq = room.last_seq = next_number(Room, room.pk, "last_seq")
            message = Message.objects.create(
                school_id=room.school_id,
                room=room,
                seq=seq,
                author=user,
                client_id=cid,
                body=text,
                created=now,
                state=Message.State.HELD if verdict.action == "hold" else Message.State.VISIBLE,
                withheld=verdict.action == "hold",
                author_note=verdict.note,
                folded=folded_for_search(text),
            )
            record(
                "message.sent",
                school_id=room.school_id,
                actor=user,
                target=message,
                target_label=f"room {room.pk} #{seq}",
                payload={
                    "room": room.pk,
                    "seq": seq,
                    "body": text,
                    "client_id": str(cid),
                    "state": message.state,
                    "screening": {"action": verdict.action, "reason": verdict.reason, **verdict.details},
                },
            )
            publish(room, {"type": "message", "message": serialize(message)})
            _screened(message, room, verdict)  # after the message's own event: staff hear of it first
    except IntegrityError:
        # The same client id arrived twice at once (two sockets, two processes): the first one won.
        with scopes_disabled():
            earlier = Message.objects.select_related("author").filter(author=user, client_id=cid).first()
        if earlier is None:
            raise
        return Sent(earlier, created=False)
    return Sent(message, created=True)


def _message(user: User, message_id: Any, now: datetime) -> tuple[Message, Room]:
    pk = policy.as_id(message_id)
    if pk is None:
        raise MessageNotFound
    with scopes_disabled():
        message = Message.objects.select_related("author", "room").filter(pk=pk).first()
    if message is None:
        raise MessageNotFound
    try:
        room = policy.room_for(user, message.room_id, now)
    except policy.RoomNotFound:
        raise MessageNotFound from None
    if message.withheld and message.author_id != user.pk and not policy.is_moderator_of(user, room):
        raise MessageNotFound
    return message, room


def _within_window(message: Message, room: Room, now: datetime) -> bool:
    return now - message.created <= timedelta(minutes=room.school.edit_window_minutes)


def edit_message(*, user: User, message_id: Any, body: Any, now: datetime | None = None) -> Message:
    """An author edits their own recent message; the audit log keeps the old text."""
    now = now or timezone.now()
    text = check_body(body)
    message, room = _message(user, message_id, now)
    if message.author_id != user.pk or message.state == Message.State.REMOVED:
        raise MessagingError("not_allowed", "You can only edit your own messages.")
    if not _within_window(message, room, now):
        raise MessagingError("edit_window_over", "Messages can only be edited for a short while after sending.")
    verdict = _may_say(user, room, text, now)
    was_shown = not message.withheld
    with audited(room.school_id), scopes_disabled():
        old = message.body
        message.body, message.edited = text, now
        if verdict.action == "hold":
            message.state, message.withheld = Message.State.HELD, True
        message.author_note = verdict.note or message.author_note
        message.folded = folded_for_search(text)
        message.save(update_fields=["body", "edited", "state", "withheld", "author_note", "folded"])
        record(
            "message.edited",
            school_id=room.school_id,
            actor=user,
            target=message,
            target_label=f"room {room.pk} #{message.seq}",
            payload={
                "room": room.pk,
                "seq": message.seq,
                "old_body": old,
                "body": text,
                "screening": {"action": verdict.action, "reason": verdict.reason, **verdict.details},
            },
        )
        publish(room, {"type": "message_edited", "message": serialize(message)})
        if was_shown and message.withheld:
            # The room saw the old text; the new one is held: everyone else takes the message off
            # their screens until a moderator decides (the author and moderators have the edit).
            position = {"id": message.pk, "room": room.pk, "seq": message.seq}
            publish(room, {"type": "message_withheld", "message": position, "not_for": message.author_id})
        _screened(message, room, verdict)
    return message


def remove_message(*, user: User, message_id: Any, reason: Any = None, now: datetime | None = None) -> Message:
    """An author deletes their own recent message, or a moderator of the room removes any, with a reason.

    The text leaves the room, never the audit log.
    """
    now = now or timezone.now()
    message, room = _message(user, message_id, now)
    if message.state == Message.State.REMOVED:
        return message
    own = message.author_id == user.pk and _within_window(message, room, now)
    if not own and not policy.is_moderator_of(user, room):
        if message.author_id == user.pk:
            raise MessagingError("edit_window_over", "Messages can only be deleted for a short while after sending.")
        raise MessagingError("not_allowed", "You can only delete your own recent messages.")
    text = "" if own else _reason(reason, "Give a reason (up to 500 characters) when you remove someone's message.")
    with audited(room.school_id), scopes_disabled():
        message.state, message.removed_by = Message.State.REMOVED, user
        message.removed_reason = "Deleted by its author" if own else text
        message.save(update_fields=["state", "removed_by", "removed_reason"])
        record(
            "message.deleted" if own else "message.removed",
            school_id=room.school_id,
            actor=user,
            target=message,
            target_label=f"room {room.pk} #{message.seq}",
            payload={"room": room.pk, "seq": message.seq, "body": message.body, "reason": message.removed_reason},
        )
        event = {"type": "message_removed", "message": serialize(message)}
        publish(room, {**event, "private_to": message.author_id} if message.withheld else event)
    return message


def approve_message(*, user: User, message_id: Any, now: datetime | None = None) -> Message:
    """A moderator of the room lets a held message through: the whole room sees it from now on."""
    now = now or timezone.now()
    message, room = _message(user, message_id, now)
    if not policy.is_moderator_of(user, room):
        raise MessagingError("not_allowed", "Only the room's teachers and moderators can do that.")
    if message.state != Message.State.HELD:
        raise MessagingError("not_held", "This message is not waiting for review.")
    with audited(room.school_id), scopes_disabled():
        message.state, message.withheld = Message.State.VISIBLE, False
        message.save(update_fields=["state", "withheld"])
        record(
            "message.approved",
            school_id=room.school_id,
            actor=user,
            target=message,
            target_label=f"room {room.pk} #{message.seq}",
            payload={"room": room.pk, "seq": message.seq},
        )
        publish(room, {"type": "message", "message": serialize(message)})
    return message


def restore_message(*, user: User, message_id: Any, reason: Any = None, now: datetime | None = None) -> Message:
    """A moderator of the room undoes a removal by staff: the message shows again (an author's own
    deletion stays theirs)."""
    now = now or timezone.now()
    message, room = _message(user, message_id, now)
    if not policy.is_moderator_of(user, room):
        raise MessagingError("not_allowed", "Only the room's teachers and moderators can do that.")
    if message.state != Message.State.REMOVED or message.removed_by_id == message.author_id:
        raise MessagingError("not_removed", "Only a message removed by staff can be restored.")
    text = _optional_reason(reason)
    with audited(room.school_id), scopes_disabled():
        # A withheld message comes back held: restoring it is not approving it.
        message.state = Message.State.HELD if message.withheld else Message.State.VISIBLE
        message.removed_by, message.removed_reason = None, ""
        message.save(update_fields=["state", "removed_by", "removed_reason"])
        record(
            "message.restored",
            school_id=room.school_id,
            actor=user,
            target=message,
            target_label=f"room {room.pk} #{message.seq}",
            payload={"room": room.pk, "seq": message.seq, "reason": text},
        )
        publish(room, {"type": "message", "message": serialize(message)})
    return message


# -- reading a room from outside it ------------------------------------------------------------------


@dataclass(frozen=True)
class Look:
    """A reason given on one socket to read a room from outside it: the record it was kept as (an
    `AccessRecord`, through `audit.looks`) and whose messages it has shown so far."""

    room: int
    access: int
    subjects: frozenset[int]


def reads_from_outside(
    user: User, room: Room, now: datetime, moderator: bool | None = None, everyone: set[int] | None = None
) -> bool:
    """Does `user` read `room` by their role, not as one of its members (a moderator, the safeguarding
    lead)? Each such reading needs a reason and is on the record. Members never need one, nor does
    someone who took part in a class that has ended and reads its archive."""
    if not (moderator if moderator is not None else policy.is_moderator_of(user, room)):
        return False
    return user.pk not in (everyone if everyone is not None else policy.members(room, now)[0])


def look_at_room(
    *, user: User, room_id: Any, reason: Any, reason_text: Any, kind: str = "room", now: datetime | None = None
) -> tuple[int, Look | None]:
    """Someone who reads a room from outside it says why (a category of `audit.looks.Reason`, and words
    for "something else"): the look is recorded, as an `AccessRecord` naming the room's students (what
    "who looked" lists) and its audit event. `kind` is "room" for the socket, "room page" for the page.
    Answers the room's id and the look; None for a member, who needs no reason and leaves no record."""
    now = now or timezone.now()
    room = _room(user, room_id, now)
    everyone, adults = policy.members(room, now)
    if not reads_from_outside(user, room, now, everyone=everyone):
        return room.pk, None
    try:
        given = looks.check_reason(reason, reason_text)
    except looks.InvalidReason as exc:
        raise MessagingError("invalid_reason", str(exc)) from None
    students = everyone - adults
    with audited(room.school_id), scopes_disabled():
        access = looks.record_look(
            reader=user, school_id=room.school_id, reason=given, kind=kind, query={"room": room.pk}, subjects=students
        )
    return room.pk, Look(room.pk, access, frozenset(students))


REASON_FIRST = "You are not a member of this room: say why you are reading it first (every reading is recorded)."


@dataclass(frozen=True)
class Page:
    room: int
    messages: list[dict[str, Any]]
    more: bool
    look: Look | None = None  # the look it was read under, with the authors it showed among its subjects


def _check_seq(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**53:
        raise MessagingError("invalid_seq", f"{name} must be a whole number of at least 0.")
    return int(value)


def _page(
    user: User,
    room_id: Any,
    now: datetime | None,
    limit: int,
    *,
    after: int | None = None,
    before: int | None = None,
    look: Look | None = None,
) -> Page:
    """A page of what `user` may see in a room, oldest first: the first after `after`, or the last before
    `before`. Someone who reads the room from outside it reads only under a `look` at it."""
    now = now or timezone.now()
    room = _room(user, room_id, now)
    moderator = policy.is_moderator_of(user, room)
    outside = reads_from_outside(user, room, now, moderator)
    if outside and (look is None or look.room != room.pk):
        raise MessagingError("reason_required", REASON_FIRST)
    with scopes_disabled():
        rows = _visible(Message.objects.filter(room=room), user, room, moderator).select_related("author")
        if after is not None:
            messages = list(rows.filter(seq__gt=after).order_by("seq")[: limit + 1])
            page = messages[:limit]
        else:
            messages = list(rows.filter(seq__lt=before).order_by("-seq")[: limit + 1])
            page = messages[:limit][::-1]
    look = _record_reading(user, room, page, look) if outside and look is not None else None
    return Page(room.pk, [serialize(m, user) for m in page], more=len(messages) > limit, look=look)


def sync(
    *, user: User, room_id: Any, after: Any, now: datetime | None = None, limit: int = PAGE, look: Look | None = None
) -> Page:
    """The messages after sequence number `after`, oldest first, one page at a time."""
    return _page(user, room_id, now, limit, after=_check_seq(after, "after"), look=look)


def history(
    *, user: User, room_id: Any, before: Any, now: datetime | None = None, limit: int = PAGE, look: Look | None = None
) -> Page:
    """The messages before sequence number `before`, a page of the newest of them, oldest first."""
    return _page(user, room_id, now, limit, before=_check_seq(before, "before"), look=look)


def _record_reading(user: User, room: Room, messages: list[Message], look: Look) -> Look:
    """A page read from outside the room is on the record: a `messages.read` event with its sequence
    numbers, tied to the look it was read under, whose record comes to name every author it showed."""
    if not messages:
        return look
    seqs = [m.seq for m in messages]
    newcomers = {m.author_id for m in messages} - look.subjects
    with audited(room.school_id), scopes_disabled():
        record(
            "messages.read",
            school_id=room.school_id,
            actor=user,
            target=room,
            target_label=room_name(room),
            payload={
                "room": room.pk,
                "from_seq": min(seqs),
                "to_seq": max(seqs),
                "count": len(seqs),
                "look": look.access,
            },
        )
        looks.widen(look.access, newcomers)
    return replace(look, subjects=look.subjects | newcomers)


def mark_read(*, user: User, room_id: Any, up_to: Any, now: datetime | None = None) -> int:
    """Move the person's read position forward (never back); return it."""
    now = now or timezone.now()
    up_to = _check_seq(up_to, "up_to")
    room = _room(user, room_id, now)
    with scopes_disabled(), transaction.atomic():
        position, _ = ReadPosition.objects.select_for_update().get_or_create(
            school_id=room.school_id, room=room, user=user
        )
        target = min(up_to, room.last_seq)
        if target > position.seq:
            position.seq = target
            position.save(update_fields=["seq"])
    return position.seq


def unread(user: User, room: Room, moderator: bool | None = None) -> int:
    with scopes_disabled():
        positions = policy.remembered(
            ("read", user.pk), lambda: dict(ReadPosition.objects.filter(user=user).values_list("room_id", "seq"))
        )
        position = positions.get(room.pk, 0)
        newer = _visible(Message.objects.filter(room=room, seq__gt=position), user, room, moderator)
        return int(newer.exclude(author=user).count())


def room_name(room: Room) -> str:
    if room.school_class is not None:
        return room.school_class.title
    return room.cohort.name if room.cohort is not None else f"Room {room.pk}"


def policy_status(user: User) -> dict[str, Any] | None:
    """The school's current acceptable-use policy as the `ready` frame shows it, or None if there is none."""
    current = current_policy(user)
    if current is None:
        return None
    return {"version": current.version, "text": current.text, "accepted": policy.has_accepted(user, current)}


def room_summaries(user: User, now: datetime | None = None) -> list[dict[str, Any]]:
    """The rooms `user` may read, as the `ready` frame and the home page list them."""
    now = now or timezone.now()
    with scopes_disabled(), policy.remembering():
        rooms = list(policy.readable_rooms(user, now).select_related("school", "school_class", "cohort").order_by("pk"))
        mutes = policy.mutes_of(user)
        return [room_summary(user, room, now, mutes.get(room.pk)) for room in rooms]


def room_summary(user: User, room: Room, now: datetime | None = None, muted: str | None = "") -> dict[str, Any]:
    """One room (fetched through the policy) as `user` sees it: its state and whether they may post, or why not.

    `muted` is the reason of the person's mute in the room, None if they are not muted, "" to look it up.
    """
    now = now or timezone.now()
    with scopes_disabled():
        if muted == "":
            muted = (
                Mute.objects.filter(user=user, room=room, ended__isnull=True).values_list("reason", flat=True).first()
            )
        people = policy.members(room, now)
        state = policy.room_state(room, now, people)
        refusal = policy.posting_refusal(user, room, now, state, people)
        # What stands in the way besides the room's state and a mute, so a client knows whether an
        # unlock or an unmute lets the person post.
        personal = (
            policy.personal_refusal(user, room, now, people)
            if refusal is not None and (refusal.code.startswith("room_") or refusal.code == "muted")
            else refusal
        )
        moderator = policy.is_moderator_of(user, room)
        member = user.pk in people[0]
        return {
            "id": room.pk,
            "name": room_name(room),
            "kind": room.kind,
            "state": state.state.value,
            "reason": state.reason,
            "last_seq": room.last_seq,
            "unread": unread(user, room, moderator),
            "muted": muted,
            "refusal": _refusal(refusal),
            "personal": _refusal(personal),
            "moderator": moderator,
            "member": member,
            # Read from outside (a moderator, the safeguarding lead): pages and live messages only after a `look`.
            "reason_required": moderator and not member,
        }


def _refusal(refusal: policy.Refusal | None) -> dict[str, str] | None:
    return None if refusal is None else {"code": refusal.code, "detail": refusal.detail}


def ready(*, user: User, now: datetime | None = None) -> list[dict[str, Any]]:
    """The rooms for the `ready` frame of a socket; the safeguarding lead's look at every room is recorded."""
    listed = room_summaries(user, now)
    if listed and user.school_id is not None and policy.is_safeguarding_lead(user):
        with transaction.atomic():
            record(
                "rooms.opened_by_safeguarding_lead",
                school_id=user.school_id,
                actor=user,
                payload={"rooms": len(listed)},
            )
    return listed


def room_people(user: User, room_id: Any, now: datetime | None = None) -> tuple[Room, list[dict[str, Any]]]:
    """Who is in a room: its adults first, then its students, by name. The room's moderators also see mutes."""
    now = now or timezone.now()
    room = _room(user, room_id, now)
    everyone, adults = policy.members(room, now)
    moderator = policy.is_moderator_of(user, room)
    with scopes_disabled():
        people = list(User.objects.filter(pk__in=everyone))
        mutes = (
            dict(Mute.objects.filter(room=room, ended__isnull=True).values_list("user_id", "reason"))
            if moderator
            else {}
        )
    people.sort(key=lambda person: (person.pk not in adults, person.family_name.lower(), person.given_name.lower()))
    return room, [
        {
            "id": person.pk,
            "name": person.full_name or person.username,
            "role": person.role,
            "adult": person.pk in adults,
            "muted": mutes.get(person.pk),
        }
        for person in people
    ]


# -- reports -------------------------------------------------------------------------------


class ReportCategory(models.TextChoices):
    BULLYING = "bullying", "Bullying or unkindness"
    HARM = "harm", "Someone may be at risk of harm"
    INAPPROPRIATE = "inappropriate", "Inappropriate content"
    PERSONAL_INFORMATION = "personal_information", "Sharing personal information"
    OTHER = "other", "Something else"


NOTE_MAX = 1000


def report_message(*, user: User, message_id: Any, category: Any, note: Any, now: datetime | None = None) -> Message:
    """Anyone who can see a message may report it; the report is recorded and handed on (`message_reported`)."""
    now = now or timezone.now()
    if category not in ReportCategory.values:
        raise MessagingError("invalid_category", "Choose what kind of problem this is.")
    if note is None:
        note = ""
    if not isinstance(note, str) or len(note) > NOTE_MAX:
        raise MessagingError("invalid_note", f"A note is text of at most {NOTE_MAX} characters.")
    message, room = _message(user, message_id, now)
    if message.author_id == user.pk:
        raise MessagingError("own_message", "You cannot report your own message.")
    with audited(room.school_id), scopes_disabled():
        record(
            "message.reported",
            school_id=room.school_id,
            actor=user,
            target=message,
            target_label=f"room {room.pk} #{message.seq}",
            payload={"room": room.pk, "seq": message.seq, "category": category, "note": note.strip()},
        )
        message_reported.send(
            sender=Message, message=message, room=room, reporter=user, category=category, note=note.strip()
        )
    return message


# -- teacher controls ---------------------------------------------------------------------


def _moderated_room(user: User, room_id: Any, now: datetime) -> Room:
    room = _room(user, room_id, now)
    if not policy.is_moderator_of(user, room):
        raise MessagingError("not_allowed", "Only the room's teachers and moderators can do that.")
    return room


def _room_changed(room: Room, action: str, actor: User, payload: dict[str, Any]) -> None:
    """Record a change of a room's state and tell its sockets the new state (after commit)."""
    record(action, school_id=room.school_id, actor=actor, target=room, target_label=room_name(room), payload=payload)
    publish(room, room_state_event(room, policy.room_state(room)))


def room_state_event(room: Room, state: policy.RoomState) -> dict[str, Any]:
    """The `room_state` frame: what every socket of the room is told when its state may have changed."""
    return {"type": "room_state", "room": room.pk, "state": state.state.value, "reason": state.reason}


def set_room_open(*, user: User, room_id: Any, opened: bool, now: datetime | None = None) -> Room:
    """A teacher opens their class room for chat, or closes it again."""
    now = now or timezone.now()
    room = _moderated_room(user, room_id, now)
    with audited(room.school_id), scopes_disabled():
        room.opened = opened
        room.save(update_fields=["opened"])
        _room_changed(room, "room.opened" if opened else "room.closed", user, {"room": room.pk})
    return room


def lock_room(*, user: User, room_id: Any, reason: Any, now: datetime | None = None) -> Room:
    now = now or timezone.now()
    room = _moderated_room(user, room_id, now)
    text = _reason(reason, "Give a reason (up to 500 characters) that everyone in the room will see.")
    with audited(room.school_id), scopes_disabled():
        room.locked_reason, room.locked_by = text, user
        room.save(update_fields=["locked_reason", "locked_by"])
        _room_changed(room, "room.locked", user, {"room": room.pk, "reason": text})
    return room


def unlock_room(*, user: User, room_id: Any, reason: Any = None, now: datetime | None = None) -> Room:
    now = now or timezone.now()
    room = _moderated_room(user, room_id, now)
    text = _optional_reason(reason)
    with audited(room.school_id), scopes_disabled():
        room.locked_reason, room.locked_by = "", None
        room.save(update_fields=["locked_reason", "locked_by"])
        _room_changed(room, "room.unlocked", user, {"room": room.pk, "reason": text})
    return room


def mute(*, user: User, room_id: Any, student_id: Any, reason: Any, now: datetime | None = None) -> Mute:
    """A teacher mutes a student of the room, with a reason the student is shown."""
    now = now or timezone.now()
    room = _moderated_room(user, room_id, now)
    text = _reason(reason, "Give the student a reason (up to 500 characters).")
    student = _student_of(room, student_id, now)
    with audited(room.school_id), scopes_disabled():
        existing = Mute.objects.filter(room=room, user=student, ended__isnull=True).first()
        if existing is not None:
            return existing
        muted = Mute.objects.create(school_id=room.school_id, room=room, user=student, reason=text, muted_by=user)
        record(
            "student.muted",
            school_id=room.school_id,
            actor=user,
            target=student,
            target_label=student.username,
            payload={"room": room.pk, "reason": text},
        )
        # The reason is for the student (and the room's staff), not for the other students.
        publish(room, {"type": "muted", "room": room.pk, "user": student.pk, "reason": text, "private_to": student.pk})
    return muted


def unmute(*, user: User, room_id: Any, student_id: Any, reason: Any = None, now: datetime | None = None) -> None:
    now = now or timezone.now()
    room = _moderated_room(user, room_id, now)
    text = _optional_reason(reason)
    student = _student_of(room, student_id, now)
    with audited(room.school_id), scopes_disabled():
        if Mute.objects.filter(room=room, user=student, ended__isnull=True).update(ended=now):
            record(
                "student.unmuted",
                school_id=room.school_id,
                actor=user,
                target=student,
                target_label=student.username,
                payload={"room": room.pk, "reason": text},
            )
            publish(room, {"type": "unmuted", "room": room.pk, "user": student.pk, "private_to": student.pk})


def _student_of(room: Room, student_id: Any, now: datetime) -> User:
    pk = policy.as_id(student_id)
    everyone, adults = policy.members(room, now)
    if pk is None or pk not in everyone or pk in adults:
        raise MessagingError("student_not_found", "There is no such student in this room.")
    with scopes_disabled():
        return User.objects.get(pk=pk)


# -- the acceptable-use policy ---------------------------------------------------------------


def school_of(user: User) -> School | None:
    """The person's school, as a socket keeps it for its clock (quiet hours, the school's day)."""
    with scopes_disabled():
        return School.objects.filter(pk=user.school_id).first() if user.school_id is not None else None


def current_policy(user: User) -> AcceptableUsePolicy | None:
    return policy.current_policy(user.school_id)


def accept_policy(*, user: User, version: Any, now: datetime | None = None) -> PolicyAcceptance:
    """Record that `user` accepted the school's current acceptable-use policy (the version they were shown)."""
    now = now or timezone.now()
    current = current_policy(user)
    if current is None or version != current.version:
        raise MessagingError("policy_changed", "The acceptable-use policy has changed; read the current one first.")
    with audited(current.school_id), scopes_disabled():
        acceptance, created = PolicyAcceptance.objects.get_or_create(
            school_id=current.school_id, policy=current, user=user, defaults={"accepted": now}
        )
        if created:
            record(
                "policy.accepted",
                school_id=current.school_id,
                actor=user,
                target=current,
                payload={"version": current.version},
            )
    return acceptance


def publish_policy(
    *, actor: User | None, school_id: int, text: str, now: datetime | None = None
) -> AcceptableUsePolicy:
    """A school admin publishes a new version of the acceptable-use policy; students accept it before posting again."""
    now = now or timezone.now()
    if not text.strip():
        raise MessagingError("empty_policy", "The policy needs some text.")
    with audited(school_id), scopes_disabled():
        latest = (
            AcceptableUsePolicy.objects.select_for_update()
            .filter(school_id=school_id)
            .order_by("-version")
            .values_list("version", flat=True)
            .first()
        )
        policy_version = AcceptableUsePolicy.objects.create(
            school_id=school_id, version=(latest or 0) + 1, text=text, published=now
        )
        record(
            "policy.published",
            school_id=school_id,
            actor=actor,
            target=policy_version,
            payload={"version": policy_version.version, "text": text},
        )
    return policy_version
