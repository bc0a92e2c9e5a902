"""Safeguarding review: search, a person's chronology, and who looked, for the safeguarding lead only.

Every look needs a reason (a category, and words for "something else") and is recorded twice: as an
`AccessRecord` naming whose messages it showed (what "who looked at this student" lists) and as a
`review.viewed` audit event. Moderators handle cases of their scope on the case pages; they and school
admins get the same 404 here as anyone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone
from django_scopes import scopes_disabled

from audit import looks
from audit.models import AuditEvent
from audit.services import record
from classes.models import School, User
from messaging import policy
from messaging.models import Message, Room
from moderation.casefile import MessageInContext, in_context
from moderation.cases import category_label
from moderation.models import AccessRecord, Case, Report
from moderation.normalize import fold_for_search

PAGE = 50
REASON_MAX = looks.REASON_MAX


class ReviewNotFound(Exception):
    """Not a reviewer, or no such person or message in the reviewer's school: one answer for all."""


class InvalidReview(Exception):
    """A reason or a filter that cannot be used; the message says why."""


def may_review(user: Any) -> bool:
    return bool(
        getattr(user, "is_authenticated", False)
        and user.is_active
        and user.school_id is not None
        and policy.is_safeguarding_lead(user)
    )


def _school(reviewer: User) -> int:
    return cast(int, reviewer.school_id)  # may_review made sure there is one


def reviewer_of(user: Any) -> User:
    if not may_review(user):
        raise ReviewNotFound
    return user  # type: ignore[no-any-return]


Reason = looks.GivenReason  # the reasons are defined in audit/, for every place that asks for one


def check_reason(reason: Any, text: Any) -> Reason:
    try:
        return looks.check_reason(reason, text)
    except looks.InvalidReason as exc:
        raise InvalidReview(str(exc)) from None


def record_look(
    user: User,
    reason: Reason,
    kind: str,
    query: dict[str, Any],
    subjects: set[int],
    *,
    school_id: int | None = None,
) -> AccessRecord:
    """Record a look by `user` in their school, or in `school_id` (an operator, who has none)."""
    now = timezone.now()
    school_id = school_id if school_id is not None else _school(user)
    with transaction.atomic(), scopes_disabled():
        access = AccessRecord.objects.create(
            school_id=school_id,
            reviewer=user,
            reason=reason.reason,
            reason_text=reason.text,
            kind=kind,
            query=query,
            created=now,
        )
        access.subjects.set(sorted(subjects))
        record(
            "review.viewed",
            school_id=school_id,
            actor=user,
            target=access,
            target_label=kind,
            payload={
                "kind": kind,
                "query": query,
                "reason": reason.reason,
                "reason_text": reason.text,
                "subjects": sorted(subjects),
            },
        )
    return access


def on_looked(
    sender: Any,
    *,
    reader: User,
    school_id: int,
    reason: Reason,
    kind: str,
    query: dict[str, Any],
    subjects: set[int],
    **kwargs: Any,
) -> int:
    """`audit.looks.looked`: a room read from outside it, the audit log read by an operator. Recorded as
    a look at the review pages is, so that it shows in "who looked"."""
    return record_look(reader, reason, kind, query, subjects, school_id=school_id).pk


def on_seen(sender: Any, *, access: int, subjects: set[int], **kwargs: Any) -> None:
    """`audit.looks.seen`: a look recorded earlier went on to show these people's messages."""
    with scopes_disabled():
        AccessRecord.objects.get(pk=access).subjects.add(*sorted(subjects))


# -- nothing about the reviewer themself ----------------------------------------------------------
#
# Invariant 6: nobody sees a case or a report about themselves. A case about the safeguarding lead (a
# member of staff) goes to the person the school names for allegations; the review pages show the lead
# the rest of the school, never that case. Every page here and in `dashboard` and `exports` reads
# cases, reports, audit events and looks through these four querysets, and nowhere else.

REPORT_ACTIONS = ("message.reported",)  # audit events about a message that are a report of it


def _keys(rows: QuerySet[Any]) -> QuerySet[Any, dict[str, Any]]:
    """Primary keys as text, to compare with an audit event's `target_id`."""
    keys: QuerySet[Any, dict[str, Any]] = rows.annotate(key=Cast("pk", output_field=CharField())).values("key")
    return keys


def review_cases(reviewer: User) -> QuerySet[Case]:
    """The school's cases as the review pages show them to `reviewer`: all but those about the reviewer."""
    with scopes_disabled():
        return Case.objects.filter(school_id=_school(reviewer)).exclude(subject_id=reviewer.pk)


def review_reports(reviewer: User) -> QuerySet[Report]:
    """The reports and flags of the cases `reviewer` is shown."""
    with scopes_disabled():
        return Report.objects.filter(school_id=_school(reviewer)).exclude(case__subject_id=reviewer.pk)


def review_events(reviewer: User) -> QuerySet[AuditEvent]:
    """The school's audit events as the review pages show them to `reviewer`: all but those about a case
    about the reviewer (its history, and what was done from it, such as a suspension, which name the case),
    the reports of the reviewer's own messages, and other people's looks at the review pages that showed
    the reviewer (a colleague looking into an allegation against them). Everything else stays, the
    reviewer's own messages as sent, edited or removed included."""
    school_id = _school(reviewer)
    with scopes_disabled():
        own_cases = list(Case.objects.filter(school_id=school_id, subject_id=reviewer.pk).values_list("pk", flat=True))
        own_messages = Message.objects.filter(school_id=school_id, author_id=reviewer.pk)
        hidden = Q(action__in=REPORT_ACTIONS, target_type="messaging.message", target_id__in=_keys(own_messages)) | Q(
            action="review.viewed", target_type="moderation.accessrecord", target_id__in=_keys(_others_looks(reviewer))
        )
        if own_cases:
            hidden |= Q(target_type="moderation.case", target_id__in=[str(pk) for pk in own_cases])
            hidden |= Q(payload__has_key="case", payload__case__in=own_cases)
        return AuditEvent.objects.filter(school_id=school_id).exclude(hidden)


def _others_looks(reviewer: User) -> QuerySet[AccessRecord]:
    return AccessRecord.objects.filter(school_id=_school(reviewer), subjects=reviewer).exclude(reviewer=reviewer)


def review_looks(reviewer: User) -> QuerySet[AccessRecord]:
    """The school's looks at the review pages as `reviewer` is shown them: all but other people's looks that
    showed the reviewer."""
    with scopes_disabled():
        return AccessRecord.objects.filter(school_id=_school(reviewer)).exclude(
            pk__in=_others_looks(reviewer).values("pk")
        )


# -- search ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    text: str = ""
    person: int | None = None
    room: int | None = None
    school_class: int | None = None
    cohort: int | None = None
    category: str = ""
    since: date | None = None
    until: date | None = None
    page: int = 1

    def as_query(self) -> dict[str, Any]:
        return {key: str(value) for key, value in self.__dict__.items() if value not in (None, "") and key != "page"}


def _day(value: str, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidReview(f"{name} is a date such as 2026-11-23.") from None


def filters_from(data: Any) -> Filters:
    """Filters from a query string; bad values get a clear error."""

    def number(name: str) -> int | None:
        raw = str(data.get(name, "") or "").strip()
        if not raw:
            return None
        found = policy.as_id(raw)
        if found is None or found < 1:
            raise InvalidReview(f"{name} is a number.")
        return found

    text = str(data.get("text", "") or "").strip()
    if len(text) > 200:
        raise InvalidReview("Search for at most 200 characters.")
    page = number("page") or 1
    return Filters(
        text=text,
        person=number("person"),
        room=number("room"),
        school_class=number("class"),
        cohort=number("cohort"),
        category=str(data.get("category", "") or "").strip()[:32],
        since=_day(str(data.get("from", "") or ""), "From"),
        until=_day(str(data.get("to", "") or ""), "To"),
        page=min(page, 10_000),
    )


def _text_search(messages: QuerySet[Message], text: str) -> QuerySet[Message]:
    """Search finds what screening finds: the words asked for, folded as screening folds them, among each
    message's folded words (`Message.folded`), so "kill" finds "k1ll" and "KIIILL".

    PostgreSQL: that, or full-text search (English stemming, web-search syntax) of the body, each on its
    GIN-indexed vector. SQLite: every word, folded, must appear in the folded body, or as asked in the body."""
    folded = fold_for_search(text)
    if connection.vendor == "postgresql":
        return messages.extra(  # the expressions must be the indexed ones (messaging migrations 0003, 0006)
            where=[
                "(to_tsvector('english'::regconfig, COALESCE(body, '')) @@ websearch_to_tsquery('english', %s)"
                " OR to_tsvector('simple'::regconfig, COALESCE(folded, '')) @@ plainto_tsquery('simple', %s))"
            ],
            params=[text, folded or text],
        )
    as_written, as_folded = Q(), Q()
    for word in text.split():
        as_written &= Q(body__icontains=word)
    for word in folded.split():
        as_folded &= Q(folded__icontains=word)
    return messages.filter(as_written | as_folded) if folded else messages.filter(as_written)


def _bounds(school: School, since: date | None, until: date | None) -> tuple[datetime | None, datetime | None]:
    zone = ZoneInfo(school.time_zone)
    start = datetime.combine(since, time.min, tzinfo=zone) if since else None
    end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=zone) if until else None
    return start, end


@dataclass
class SearchResult:
    rows: list[tuple[Message, str]]  # each message with the name of its room
    more: bool
    page: int


def matching(reviewer: User, filters: Filters) -> QuerySet[Message]:
    """The school's messages that match the filters, newest first."""
    with scopes_disabled():
        school = School.objects.get(pk=_school(reviewer))
        messages = Message.objects.filter(school_id=school.pk)
        if filters.person:
            messages = messages.filter(author_id=filters.person)
        if filters.room:
            messages = messages.filter(room_id=filters.room)
        if filters.school_class:
            messages = messages.filter(room__school_class_id=filters.school_class)
        if filters.cohort:
            messages = messages.filter(room__cohort_id=filters.cohort)
        if filters.category:
            flagged = review_cases(reviewer).filter(categories__icontains=f'"{filters.category}"')
            messages = messages.filter(pk__in=flagged.values("message_id"))
        start, end = _bounds(school, filters.since, filters.until)
        if start:
            messages = messages.filter(created__gte=start)
        if end:
            messages = messages.filter(created__lt=end)
        if filters.text:
            messages = _text_search(messages, filters.text)
        return messages.select_related("author", "room__school_class", "room__cohort").order_by("-created", "-pk")


def search(user: Any, reason: Reason, filters: Filters) -> SearchResult:
    """Messages of the school matching the filters, newest first, a page at a time."""
    reviewer = reviewer_of(user)
    offset = (filters.page - 1) * PAGE
    with scopes_disabled():
        found = list(matching(reviewer, filters)[offset : offset + PAGE + 1])
    page = found[:PAGE]
    record_look(reviewer, reason, "search", filters.as_query() | {"page": filters.page}, {m.author_id for m in page})
    return SearchResult([(m, room_label(m)) for m in page], len(found) > PAGE, filters.page)


def _rooms_asked(school_id: int, filters: Filters) -> list[int] | None:
    """The rooms a search names (a room, a class's room, a year group's room), or None for any room."""
    if not (filters.room or filters.school_class or filters.cohort):
        return None
    rooms = Room.objects.filter(school_id=school_id)
    if filters.room:
        rooms = rooms.filter(pk=filters.room)
    if filters.school_class:
        rooms = rooms.filter(school_class_id=filters.school_class)
    if filters.cohort:
        rooms = rooms.filter(cohort_id=filters.cohort)
    return list(rooms.values_list("pk", flat=True))


@dataclass
class EventResult:
    events: list[AuditEvent]
    more: bool
    page: int


def search_events(user: Any, reason: Reason, filters: Filters) -> EventResult:
    """The school's audit events matching the filters, newest first: `person` as actor or as the person
    acted on, `category` as the start of the action ("case.", "message.removed"), a room (or a class's or
    a year group's) as the room the event names, `text` in the details."""
    reviewer = reviewer_of(user)
    with scopes_disabled():
        school = School.objects.get(pk=_school(reviewer))
        events = review_events(reviewer)
        if filters.person:
            events = events.filter(
                Q(actor_id=filters.person) | Q(target_type="classes.user", target_id=str(filters.person))
            )
        if filters.category:
            events = events.filter(action__startswith=filters.category)
        rooms = _rooms_asked(school.pk, filters)
        if rooms is not None:
            events = events.filter(payload__room__in=rooms)
        start, end = _bounds(school, filters.since, filters.until)
        if start:
            events = events.filter(created__gte=start)
        if end:
            events = events.filter(created__lt=end)
        for word in filters.text.split():
            events = events.filter(Q(payload__icontains=word) | Q(target_label__icontains=word))
        offset = (filters.page - 1) * PAGE
        found = list(events.order_by("-seq")[offset : offset + PAGE + 1])
    page = found[:PAGE]
    subjects = {e.actor_id for e in page if e.actor_id} | {
        int(e.target_id) for e in page if e.target_type == "classes.user" and e.target_id.isdigit()
    }
    record_look(reviewer, reason, "event search", filters.as_query() | {"page": filters.page}, subjects)
    return EventResult(page, len(found) > PAGE, filters.page)


def room_label(message: Message) -> str:
    room = message.room
    if room.school_class is not None:
        return room.school_class.title
    return room.cohort.name if room.cohort is not None else f"Room {room.pk}"


def message_in_context(user: Any, reason: Reason, message_id: Any) -> tuple[Message, list[MessageInContext]]:
    """A message of the school with the conversation around it, every version shown; recorded."""
    reviewer = reviewer_of(user)
    pk = policy.as_id(message_id)
    with scopes_disabled():
        message = (
            Message.objects.filter(pk=pk, school_id=_school(reviewer)).select_related("room").first()
            if pk is not None
            else None
        )
    if message is None:
        raise ReviewNotFound
    lines = in_context(message, around=10)
    record_look(reviewer, reason, "conversation", {"message": message.pk}, {line.message.author_id for line in lines})
    return message, lines


# -- a person's chronology ---------------------------------------------------------------------------

CHRONOLOGY_ACTIONS = {
    "message.removed": "A message of theirs was removed by staff",
    "message.reported": "A message of theirs was reported",
    "message.approved": "A held message of theirs was approved",
    "message.restored": "A removed message of theirs was restored",
    "student.muted": "Muted",
    "student.unmuted": "Unmuted",
    "account.suspended": "Account suspended",
    "account.restored": "Suspension lifted",
}


@dataclass(frozen=True)
class Entry:
    when: datetime
    what: str
    detail: str
    link: str = ""


def person_of(reviewer: User, person_id: Any) -> User:
    pk = policy.as_id(person_id)
    found = User.objects.filter(pk=pk, school_id=_school(reviewer)).first() if pk is not None else None
    if found is None:
        raise ReviewNotFound
    return found


def chronology(user: Any, reason: Reason, person_id: Any) -> tuple[User, list[Entry]]:
    """Everything recorded about a person (a student, or a member of staff for an allegation), in time
    order: cases about them and how they went, flags and reports of their messages, removals, mutes,
    suspensions."""
    reviewer = reviewer_of(user)
    person = person_of(reviewer, person_id)
    entries, _ = chronology_of(reviewer, person)
    record_look(reviewer, reason, "chronology", {"person": person.pk}, {person.pk})
    return person, entries


def chronology_of(reviewer: User, person: User) -> tuple[list[Entry], list[AuditEvent]]:
    """A person's chronology, and the audit events it comes from (for an export's manifest)."""
    entries: list[Entry] = []
    with scopes_disabled():
        their_messages = [str(pk) for pk in Message.objects.filter(author=person).values_list("pk", flat=True)]
        events = list(
            review_events(reviewer)
            .filter(action__in=CHRONOLOGY_ACTIONS)
            .filter(
                Q(target_type="classes.user", target_id=str(person.pk))
                | Q(target_type="messaging.message", target_id__in=their_messages)
            )
            .order_by("created")
        )
        for event in events:
            reason_given = event.payload.get("reason") or event.payload.get("category") or ""
            detail = f"by {event.actor_label or 'Commonroom'}" + (f": {reason_given}" if reason_given else "")
            link = f"/review/messages/{event.target_id}/" if event.target_type == "messaging.message" else ""
            entries.append(Entry(event.created, CHRONOLOGY_ACTIONS[event.action], detail, link))
        their_cases = list(review_cases(reviewer).filter(subject=person))
        for case in their_cases:
            labels = ", ".join(category_label(key) for key in case.categories)
            link = f"/cases/{case.pk}/"
            entries.append(Entry(case.opened, f"Case {case.pk} opened", f"{labels}; severity {case.severity}", link))
            if case.resolved:
                entries.append(Entry(case.resolved, f"Case {case.pk} resolved", case.get_outcome_display(), link))
        events += list(
            review_events(reviewer).filter(
                target_type="moderation.case",
                target_id__in=[str(case.pk) for case in their_cases],
                action__in=["case.opened", "case.resolved"],
            )
        )
    entries.sort(key=lambda entry: entry.when)
    return entries, events


def who_looked(user: Any, reason: Reason, person_id: Any) -> tuple[User, list[AccessRecord]]:
    """Every look that showed this person's messages, newest first (itself recorded): at the review pages,
    at a room by a moderator or the safeguarding lead who is not its member, at the audit log by an
    operator."""
    reviewer = reviewer_of(user)
    person = person_of(reviewer, person_id)
    with scopes_disabled():
        looks = list(
            review_looks(reviewer).filter(subjects=person).select_related("reviewer").order_by("-created")[:500]
        )
    record_look(reviewer, reason, "access", {"person": person.pk}, set())
    return person, looks
