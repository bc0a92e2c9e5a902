"""Every reading of a child's messages is on the record: why someone outside a conversation reads it,
and the hook through which their look is kept.

The reasons are one definition, asked wherever a person reads messages they take no part in: the
safeguarding review pages, a room read by a moderator or the safeguarding lead who is not a member of
it (on the socket and on its page), and the audit log in the operator's admin. They live here, at the
bottom of the layers, because every one of those places may use them. The records themselves
(`moderation.models.AccessRecord`, what "who looked" lists) belong to moderation/, which audit/ and
messaging/ must not import: a look is handed up through the `looked` signal, and moderation/ answers
with the id of the record it wrote. A look that nothing records is refused (`NotRecorded`), so that a
missing receiver can never turn into reading off the record.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.dispatch import Signal

REASON_MAX = 500


class Reason(models.TextChoices):
    """Why someone reads messages they take no part in (`AccessRecord.reason`)."""

    CONCERN = "concern", "A safeguarding concern about a child"
    CASE = "case", "Handling a case"
    ALLEGATION = "allegation", "An allegation against a member of staff"
    REQUEST = "request", "A request from the police, children's services or another agency"
    AUDIT = "audit", "Reviewing how the school's safeguarding works"
    OTHER = "other", "Something else (say what)"


@dataclass(frozen=True)
class GivenReason:
    """A reason as a person gave it: one of `Reason`, and their own words (needed for "something else")."""

    reason: str
    text: str = ""

    @property
    def label(self) -> str:
        return str(Reason(self.reason).label)


def hold(session: Any, key: str, reason: GivenReason, minutes: int, *, within: str | None = None) -> None:
    """Remember a reason in a person's session for `minutes` (under `within`: one a room, say), so that
    they are not asked again on every page; lapsed ones are dropped as new ones are held."""
    now = time.time()
    until = now + minutes * 60
    given = {"reason": reason.reason, "text": reason.text, "until": until}
    if within is None:
        session[key] = given
        return
    kept = {name: value for name, value in (session.get(key) or {}).items() if value.get("until", 0) >= now}
    session[key] = {**kept, within: given}


def held(session: Any, key: str, *, within: str | None = None) -> GivenReason | None:
    """The reason held in a session under `key` (and `within`), if it has not lapsed."""
    found = session.get(key)
    if within is not None:
        found = (found or {}).get(within) if isinstance(found, dict) else None
    if not isinstance(found, dict) or found.get("until", 0) < time.time():
        return None
    return GivenReason(found["reason"], found["text"])


class InvalidReason(ValueError):
    """A reason that cannot be used; the message says why, to the person who gave it."""


def check_reason(reason: Any, text: Any) -> GivenReason:
    words = "" if text is None else str(text).strip()
    if reason not in Reason.values:
        raise InvalidReason("Choose why you are looking.")
    if reason == Reason.OTHER and not words:
        raise InvalidReason("Say why you are looking.")
    if len(words) > REASON_MAX:
        raise InvalidReason(f"A reason can be at most {REASON_MAX} characters long.")
    return GivenReason(str(reason), words)


# Sent inside the transaction of a look, with `reader` (a User), `school_id` (the school whose people it
# showed), `reason` (a GivenReason), `kind` (what was read: "room", "room page", "audit log"), `query`
# (what was asked, as JSON) and `subjects` (ids of the people whose messages it showed). A receiver that
# keeps the record returns its id.
looked = Signal()

# Sent inside a transaction when a look already recorded goes on to show the messages of more people,
# with `access` (the id `looked` answered) and `subjects` (their ids).
seen = Signal()


class NotRecorded(RuntimeError):
    """No receiver kept the record of a look (moderation/ is not installed): the look must not happen."""


def record_look(
    *, reader: Any, school_id: int, reason: GivenReason, kind: str, query: dict[str, Any], subjects: Iterable[int]
) -> int:
    """Hand a look up to be recorded, inside the caller's transaction; the id of its record."""
    answers = looked.send(
        sender=GivenReason,
        reader=reader,
        school_id=school_id,
        reason=reason,
        kind=kind,
        query=query,
        subjects=set(subjects),
    )
    kept = [answer for _, answer in answers if answer is not None]
    if not kept:
        raise NotRecorded("Nothing recorded this look; is moderation/ installed?")
    return int(kept[0])


def widen(access: int, subjects: Iterable[int]) -> None:
    """Add people to the subjects of a recorded look (it went on to show their messages)."""
    people = set(subjects)
    if people:
        seen.send(sender=GivenReason, access=access, subjects=people)
