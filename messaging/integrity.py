"""Messages as stored, checked against the audit log's record of them.

The audit log keeps every version of a message's text: `message.sent` and `message.edited` carry
the body, the room and the position in their payload. The row in `Message` is what the room shows,
and an UPDATE of it in the database leaves no trace in the log. So `manage.py audit_verify` runs
`check_message_bodies` (named in COMMONROOM_RECORD_CHECKS: audit/ does not import messaging/), which
finds every message whose text, room or position is not the last version the log recorded, every
message the log has no version of, and every message the log has but the database no longer does.

One pass per school over two streams read in chunks, in order of message id: the school's messages,
and the versions in its chain, the last one of each message first. No query per message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.db.models import BigIntegerField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django_scopes import scopes_disabled

from audit.chain import clean_payload
from audit.models import AuditEvent, chain_for_school
from audit.records import Found, RecordFinding
from classes.models import School
from messaging.models import Message

VERSIONS = ("message.sent", "message.edited")  # the events that set a message's text
TARGET_TYPE = "messaging.message"  # as `audit.services.Entry.about` names a message
CHUNK = 5000
NO_VERSION = "the audit log has no version of it: it was added outside Commonroom, or its events were removed"


class _Stored(NamedTuple):
    id: int
    room: int
    seq: int
    body: str


class _Version(NamedTuple):
    message: int
    event: int
    position: int  # in the chain
    action: str
    label: str  # "room 7 #12", as the event names the message
    body: Any  # as the payload has them; anything, if the event was forged
    room: Any
    seq: Any


def check_message_bodies(school_id: int | None, found: Found) -> int:
    """Check the messages of one school (None: of every school); answer how many were checked."""
    if school_id is not None:
        return _check_school(school_id, found)
    with scopes_disabled():
        schools = list(School.objects.order_by("pk").values_list("pk", flat=True))
    return sum(_check_school(school, found) for school in schools)


def _check_school(school_id: int, found: Found) -> int:
    chain = chain_for_school(school_id)
    with _one_snapshot(), scopes_disabled():
        return _compare(chain, _stored(school_id), _last_versions(chain), found)


@contextmanager
def _one_snapshot() -> Iterator[None]:
    """Read both streams from one state of the database: an edit committed between the two queries
    would otherwise look like a changed message."""
    if connection.in_atomic_block:  # inside the caller's transaction, whose isolation stands
        yield
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        # SQLite: a transaction reads one snapshot from its first read on.
        yield


def _stored(school_id: int) -> Iterator[_Stored]:
    rows = Message.objects.filter(school_id=school_id).order_by("pk").values_list("pk", "room_id", "seq", "body")
    for row in rows.iterator(CHUNK):
        yield _Stored(*row)


def _last_versions(chain: str) -> Iterator[_Version]:
    """The last version of each message the chain recorded, in order of message id."""
    rows = (
        AuditEvent.all_chains.filter(
            chain=chain, action__in=VERSIONS, target_type=TARGET_TYPE, target_id__regex=r"^[0-9]{1,18}$"
        )
        .annotate(
            message=Cast("target_id", BigIntegerField()),
            version_body=KT("payload__body"),
            version_room=KT("payload__room"),
            version_seq=KT("payload__seq"),
        )
        .order_by("message", "-seq")
        .values_list("message", "id", "seq", "action", "target_label", "version_body", "version_room", "version_seq")
    )
    last = None
    for row in rows.iterator(CHUNK):
        if row[0] != last:  # the first of a message's rows is its last version
            last = row[0]
            yield _Version(*row)


def _compare(chain: str, stored: Iterator[_Stored], versions: Iterator[_Version], found: Found) -> int:
    """Walk both streams, in order of message id, together; answer how many messages were read."""
    version = next(versions, None)
    checked = 0
    for message in stored:
        checked += 1
        while version is not None and version.message < message.id:
            found(_gone(chain, version))
            version = next(versions, None)
        if version is None or version.message != message.id:
            found(RecordFinding(chain, _name(message), NO_VERSION))
            continue
        differs = _differences(message, version)
        if differs:
            found(_changed(chain, message, version, differs))
        version = next(versions, None)
    while version is not None:
        found(_gone(chain, version))
        version = next(versions, None)
    return checked


def _differences(message: _Stored, version: _Version) -> list[str]:
    differs = []
    if version.body != clean_payload(message.body):  # the log's copy is cleaned as every payload is
        differs.append("text")
    if str(version.room) != str(message.room):
        differs.append("room")
    if str(version.seq) != str(message.seq):
        differs.append("position in its room")
    return differs


def _name(message: _Stored) -> str:
    return f"message {message.id} (room {message.room} #{message.seq})"


def _changed(chain: str, message: _Stored, version: _Version, differs: list[str]) -> RecordFinding:
    return RecordFinding(
        chain,
        _name(message),
        f"its {' and '.join(differs)} {'differs' if len(differs) == 1 else 'differ'} from the last version the "
        "audit log recorded "
        f"({version.action}, event {version.event} at position {version.position}): "
        "it was changed outside Commonroom",
    )


def _gone(chain: str, version: _Version) -> RecordFinding:
    return RecordFinding(
        chain,
        f"message {version.message} ({version.label})",
        f"the audit log records it ({version.action}, event {version.event} at position {version.position}), "
        "but it is no longer stored: it was deleted outside Commonroom",
    )
