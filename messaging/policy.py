"""Who may read and post in which room, and what state a room is in.

This module is the only place that decides it; the consumer, the views and
the services all ask here. `room_for` is the only way to fetch a room for a
person, and it answers a room that exists but is not theirs exactly as it
answers a room that does not exist.

Readers of a class room: its current students, teachers and aides (and, once
the class has ended, those who were in it on its last day). Readers of a
cohort room: its current members (graduates too, where the school keeps
alumni access) and the staff attached to the cohort. Moderators read the
rooms of their school (or of their cohorts), the safeguarding lead reads every
room of the school; neither posts. School admins read nothing as admins.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from django.db.models import Exists, F, Q, QuerySet
from django.utils import timezone
from django_scopes import scopes_disabled

from classes import membership
from classes.membership import People
from classes.models import (
    Cohort,
    CohortMembership,
    CohortStaff,
    Enrollment,
    School,
    SchoolClass,
    StaffRole,
    User,
)
from messaging.models import AcceptableUsePolicy, Mute, PolicyAcceptance, Room


class RoomNotFound(Exception):
    """No such room, or not one this person may read: the same answer for both."""


class State(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"  # by its teacher's choice (or not opened yet)
    LOCKED = "locked"  # by a teacher, with a reason; or a room of two people
    READ_ONLY = "read_only"  # a graduated cohort, an ended class
    QUIET_HOURS = "quiet_hours"


@dataclass(frozen=True)
class RoomState:
    state: State
    reason: str = ""
    opens_at: datetime | None = None  # for quiet hours


@dataclass(frozen=True)
class Refusal:
    """Why a person may not post: a stable code and a sentence they can read."""

    code: str
    detail: str


def _today(school: School, now: datetime) -> date:
    return timezone.localtime(now, ZoneInfo(school.time_zone)).date()


_memo: ContextVar[dict[Any, Any] | None] = ContextVar("policy_memo", default=None)


@contextmanager
def remembering() -> Iterator[None]:
    """Within this block, what cannot change while one answer is put together (a person's staff roles,
    their mutes, the school's current policy) is looked up once, not once per room."""
    if _memo.get() is not None:
        yield
        return
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


def remembered(key: Any, look_up: Callable[[], Any]) -> Any:
    """`look_up()`, asked once per `remembering` block (every time outside one)."""
    memo = _memo.get()
    if memo is None:
        return look_up()
    if key not in memo:
        memo[key] = look_up()
    return memo[key]


def _roles(user: Any) -> set[str]:
    return cast(
        set[str],
        remembered(
            ("roles", user.pk),
            lambda: set(
                StaffRole.objects.filter(school_id=user.school_id, user_id=user.pk, active=True).values_list(
                    "role", flat=True
                )
            ),
        ),
    )


def readable_rooms(user: Any, now: datetime | None = None) -> QuerySet[Room]:
    """Every room `user` may read, in their school only."""
    if not getattr(user, "is_authenticated", False) or not user.is_active or user.school_id is None:
        return Room.objects.none()
    now = now or timezone.now()
    with scopes_disabled():
        school = School.objects.get(pk=user.school_id)
        today = _today(school, now)
        rooms = Room.objects.filter(school_id=school.pk)
        roles = _roles(user)
        if StaffRole.Role.SCHOOL_ADMIN in roles:
            return Room.objects.none()  # whoever provisions the school does not read its rooms
        if StaffRole.Role.SAFEGUARDING_LEAD in roles:
            return rooms
        if StaffRole.Role.MODERATOR in roles:
            cohorts = list(
                StaffRole.objects.filter(
                    school_id=school.pk, user_id=user.pk, role=StaffRole.Role.MODERATOR, active=True
                ).values_list("cohorts", flat=True)
            )
            cohort_ids = [c for c in cohorts if c is not None]
            if not cohort_ids:
                return rooms
            members = CohortMembership.objects.filter(cohort_id__in=cohort_ids, end_date__isnull=True).values("user_id")
            their_classes = membership.current(Enrollment.objects.filter(user_id__in=members), today).values(
                "school_class_id"
            )
            moderated = Q(cohort_id__in=cohort_ids) | Q(school_class_id__in=their_classes)
        else:
            moderated = Q(pk__in=[])
        mine = Enrollment.objects.filter(user_id=user.pk)
        current_classes = membership.current(mine, today).values("school_class_id")
        ended_classes = SchoolClass.objects.filter(
            status=SchoolClass.Status.ARCHIVED,
            enrollments__user_id=user.pk,
            enrollments__end_date__gte=F("archived_on"),
        ).values("pk")
        cohorts_in = CohortMembership.objects.filter(user_id=user.pk, end_date__isnull=True).values("cohort_id")
        cohorts_staffed = CohortStaff.objects.filter(user_id=user.pk, active=True).values("cohort_id")
        return rooms.filter(
            moderated
            | Q(school_class_id__in=current_classes)
            | Q(school_class_id__in=ended_classes)
            | Q(cohort_id__in=cohorts_in)
            | Q(cohort_id__in=cohorts_staffed)
        ).distinct()


def is_safeguarding_lead(user: Any) -> bool:
    with scopes_disabled():
        return StaffRole.Role.SAFEGUARDING_LEAD in _roles(user)


def as_id(value: Any) -> int | None:
    """An id as a frame or a URL gives it (a number, or digits in a string), or None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        return int(value)
    except (ValueError, OverflowError):
        return None


def room_for(user: Any, room_id: Any, now: datetime | None = None) -> Room:
    """The room `room_id`, if `user` may read it; RoomNotFound otherwise (and for ids that are not ids)."""
    pk = as_id(room_id)
    if pk is None or not getattr(user, "is_authenticated", False) or not user.is_active or user.school_id is None:
        raise RoomNotFound
    with scopes_disabled():
        room = (
            Room.objects.filter(pk=pk, school_id=user.school_id)
            .select_related("school", "school_class", "cohort")
            .first()
        )
        if room is None or not _may_read(user, room, now or timezone.now()):
            raise RoomNotFound
    return room


def _may_read(user: Any, room: Room, now: datetime) -> bool:
    """`readable_rooms` asked of one room, with small queries instead of the whole list (the hot path of
    every send), the commonest answer first: the person takes part in the room. tests/test_policy.py
    checks that the two always agree."""
    today = _today(room.school, now)
    admin = Exists(membership.provisions(user.pk))
    if room.school_class_id is not None:
        mine = Enrollment.objects.filter(school_class_id=room.school_class_id, user_id=user.pk)
        if membership.current(mine, today).exclude(admin).exists():
            return True
    elif (
        CohortMembership.objects.filter(user_id=user.pk, cohort_id=room.owner_id, end_date__isnull=True)
        .exclude(admin)
        .exists()
        or CohortStaff.objects.filter(user_id=user.pk, cohort_id=room.owner_id, active=True).exclude(admin).exists()
    ):
        return True
    roles = _roles(user)
    if StaffRole.Role.SCHOOL_ADMIN in roles:
        return False
    if StaffRole.Role.SAFEGUARDING_LEAD in roles:
        return True
    if StaffRole.Role.MODERATOR in roles:
        cohort_ids = [
            c
            for c in StaffRole.objects.filter(
                school_id=room.school_id, user_id=user.pk, role=StaffRole.Role.MODERATOR, active=True
            ).values_list("cohorts", flat=True)
            if c is not None
        ]
        if not cohort_ids or room.cohort_id in cohort_ids:
            return True
        if room.school_class_id is not None:
            members = CohortMembership.objects.filter(cohort_id__in=cohort_ids, end_date__isnull=True).values("user_id")
            if membership.current(
                Enrollment.objects.filter(school_class_id=room.school_class_id, user_id__in=members), today
            ).exists():
                return True
    school_class = room.school_class
    return bool(
        school_class is not None
        and school_class.status == SchoolClass.Status.ARCHIVED
        and school_class.archived_on is not None
        and Enrollment.objects.filter(
            school_class_id=school_class.pk, user_id=user.pk, end_date__gte=school_class.archived_on
        ).exists()
    )


def members(room: Room, now: datetime | None = None) -> People:
    """The people who take part in a room now (not its moderators): (everyone, the adults among them).

    `classes.membership` defines who takes part and who is an adult; this asks it for the room's class
    or cohort."""
    return members_of([room], now)[room.pk]


def members_of(rooms: list[Room], now: datetime | None = None) -> dict[int, People]:
    """`members` of many rooms at once, in a few queries (rooms must have their school loaded)."""
    now = now or timezone.now()
    found: dict[int, People] = {}
    with scopes_disabled():
        by_day: dict[date, list[Room]] = {}
        for room in rooms:
            if room.school_class_id is not None:
                by_day.setdefault(_today(room.school, now), []).append(room)
        for today, class_rooms in by_day.items():
            people = membership.class_people([r.owner_id for r in class_rooms], today)
            found.update({r.pk: people.get(r.owner_id, (set(), set())) for r in class_rooms})
        cohort_rooms = [room for room in rooms if room.cohort_id is not None]
        if cohort_rooms:
            people = membership.cohort_people([r.owner_id for r in cohort_rooms])
            found.update({r.pk: people.get(r.owner_id, (set(), set())) for r in cohort_rooms})
    return found


def _quiet(school: School, now: datetime) -> datetime | None:
    """When posting opens again, if `now` is in the school's quiet hours."""
    start, end = school.quiet_hours_start, school.quiet_hours_end
    if start is None or end is None or start == end:
        return None
    local = timezone.localtime(now, ZoneInfo(school.time_zone))
    clock = local.time()
    quiet = (start <= clock or clock < end) if start > end else (start <= clock < end)
    if not quiet:
        return None
    opens = datetime.combine(local.date(), end, tzinfo=local.tzinfo)
    if opens <= local:
        opens += timedelta(days=1)
    return opens


def room_state(room: Room, now: datetime | None = None, people: People | None = None) -> RoomState:
    """`people` may pass the room's `members` when the caller has just worked them out."""
    now = now or timezone.now()
    school = room.school
    with scopes_disabled():
        school_class, cohort = room.school_class, room.cohort
        if school_class is not None and school_class.status == SchoolClass.Status.ARCHIVED:
            return RoomState(State.READ_ONLY, "This class has ended.")
        if cohort is not None and cohort.status != Cohort.Status.ACTIVE:
            return RoomState(State.READ_ONLY, f"{cohort.name} has graduated.")
    if room.locked_reason:
        return RoomState(State.LOCKED, room.locked_reason)
    everyone, adults = people or members(room, now)
    if not adults:
        # Every conversation has the adults responsible for it in its audience.
        return RoomState(State.LOCKED, "This room opens when a member of staff joins it.")
    if len(everyone) == 2 and len(adults) < 2:
        # Invariant 2: no room is private to two people.
        return RoomState(State.LOCKED, "This room opens when a second adult joins it.")
    opened = room.opened if room.opened is not None else (room.cohort_id is not None or school.class_rooms_start_open)
    if not opened:
        return RoomState(State.CLOSED, "A teacher has not opened this room for chat.")
    return on_the_clock(school, now)


def on_the_clock(school: School, now: datetime) -> RoomState:
    """The state of a room of `school` that is otherwise open, at `now`: open, or in quiet hours."""
    opens_at = _quiet(school, now)
    if opens_at is not None:
        return RoomState(State.QUIET_HOURS, f"Quiet hours: posting opens again at {opens_at:%H:%M}.", opens_at)
    return RoomState(State.OPEN)


def school_day(school: School, now: datetime) -> date:
    """The date where the school is, at `now`."""
    return _today(school, now)


def next_clock_change(school: School, now: datetime) -> datetime:
    """The next moment after `now` at which a room's state can change by the clock alone: quiet hours
    start or end, or a new day begins where the school is (enrollments start and end by date)."""
    local = timezone.localtime(now, ZoneInfo(school.time_zone))
    moments = [datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=local.tzinfo)]
    for clock in (school.quiet_hours_start, school.quiet_hours_end):
        if clock is not None and school.quiet_hours_start != school.quiet_hours_end:
            moment = datetime.combine(local.date(), clock, tzinfo=local.tzinfo)
            moments.append(moment if moment > local else moment + timedelta(days=1))
    return min(moments)


def _age(birth_date: date, today: date) -> int:
    return today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))


NOT_A_MEMBER = Refusal("not_a_member", "You can read this room but not post in it.")


def posting_refusal(
    user: User, room: Room, now: datetime | None = None, state: RoomState | None = None, people: People | None = None
) -> Refusal | None:
    """Why `user` may not post in `room` now, or None if they may. `room` must come from `room_for`;
    `state` and `people` may pass what the caller has just worked out."""
    now = now or timezone.now()
    people = people or members(room, now)
    if user.pk not in people[0]:
        return NOT_A_MEMBER
    state = state or room_state(room, now, people)
    if state.state != State.OPEN:
        return Refusal(f"room_{state.state.value}", state.reason)
    if membership.is_adult(user.role):
        return None
    with scopes_disabled():
        reason = mutes_of(user).get(room.pk)
    if reason is not None:
        return Refusal("muted", f"A teacher has muted you in this room: {reason}")
    return _student_refusal(user, room, now)


def personal_refusal(
    user: User, room: Room, now: datetime | None = None, people: People | None = None
) -> Refusal | None:
    """Why `user` could not post in `room` even if it were open and they were not muted: they do not
    take part in it, or (a student) have not accepted the policy or lack a parent's consent."""
    now = now or timezone.now()
    if user.pk not in (people or members(room, now))[0]:
        return NOT_A_MEMBER
    if membership.is_adult(user.role):
        return None
    return _student_refusal(user, room, now)


def _student_refusal(user: User, room: Room, now: datetime) -> Refusal | None:
    with scopes_disabled():
        current = current_policy(room.school_id)
        if current is not None and not has_accepted(user, current):
            return Refusal("policy_not_accepted", "Accept your school's acceptable-use policy before you post.")
    school = room.school
    today = _today(school, now)
    if (
        school.under_13_needs_consent
        and user.birth_date is not None
        and _age(user.birth_date, today) < 13
        and user.parental_consent_on is None
    ):
        return Refusal("parental_consent_required", "You can post once a parent's consent has been recorded.")
    return None


def mutes_of(user: Any) -> dict[int, str]:
    """The reasons of `user`'s mutes now in force, by room."""
    return cast(
        dict[int, str],
        remembered(
            ("mutes", user.pk),
            lambda: dict(Mute.objects.filter(user_id=user.pk, ended__isnull=True).values_list("room_id", "reason")),
        ),
    )


def current_policy(school_id: int | None) -> AcceptableUsePolicy | None:
    """The school's acceptable-use policy now in force, if it has one."""
    if school_id is None:
        return None
    with scopes_disabled():
        return cast(
            AcceptableUsePolicy | None,
            remembered(
                ("policy", school_id),
                lambda: AcceptableUsePolicy.objects.filter(school_id=school_id).order_by("-version").first(),
            ),
        )


def has_accepted(user: Any, current: AcceptableUsePolicy) -> bool:
    with scopes_disabled():
        return bool(
            remembered(
                ("accepted", current.pk, user.pk),
                lambda: PolicyAcceptance.objects.filter(policy=current, user_id=user.pk).exists(),
            )
        )


def taught_rooms(user: Any) -> QuerySet[Room]:
    """The rooms whose teacher `user` is now: their classes' rooms (enrolled as a teacher) and the rooms
    of the cohorts they are attached to; none for someone who cannot take part (a school admin)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active or user.school_id is None:
        return Room.objects.none()
    with scopes_disabled():
        if membership.provisions(user.pk).exists():
            return Room.objects.none()
        classes = Enrollment.objects.filter(user_id=user.pk, active=True, role=Enrollment.Role.TEACHER)
        cohorts = CohortStaff.objects.filter(user_id=user.pk, active=True)
        return Room.objects.filter(school_id=user.school_id).filter(
            Q(school_class_id__in=classes.values("school_class_id")) | Q(cohort_id__in=cohorts.values("cohort_id"))
        )


def room_teachers(room: Room) -> set[int]:
    """The people who teach in `room` now and can take part: a class's teachers, a cohort's staff."""
    with scopes_disabled():
        if room.school_class_id is not None:
            rows: Any = Enrollment.objects.filter(
                school_class_id=room.school_class_id, active=True, role=Enrollment.Role.TEACHER
            )
        else:
            rows = CohortStaff.objects.filter(cohort_id=room.owner_id, active=True)
        return set(membership.taking_part(rows).values_list("user_id", flat=True))


def is_moderator_of(user: User, room: Room) -> bool:
    """May `user` moderate `room` (remove messages, mute, lock): its teachers, the moderators who can read
    it, and the safeguarding lead."""
    with scopes_disabled():
        if user.school_id != room.school_id or not user.is_active:
            return False
        admin = Exists(membership.provisions(user.pk))
        if (
            room.school_class_id is not None
            and Enrollment.objects.filter(
                school_class_id=room.school_class_id, user_id=user.pk, active=True, role=Enrollment.Role.TEACHER
            )
            .exclude(admin)
            .exists()
        ):
            return True
        if (
            room.cohort_id is not None
            and CohortStaff.objects.filter(cohort_id=room.cohort_id, user_id=user.pk, active=True)
            .exclude(admin)
            .exists()
        ):
            return True
        roles = _roles(user)
        if StaffRole.Role.SAFEGUARDING_LEAD in roles:
            return True
        if StaffRole.Role.MODERATOR in roles:
            return _may_read(user, room, timezone.now())
    return False


__all__ = [
    "Refusal",
    "RoomNotFound",
    "RoomState",
    "State",
    "as_id",
    "is_moderator_of",
    "members",
    "members_of",
    "next_clock_change",
    "on_the_clock",
    "personal_refusal",
    "posting_refusal",
    "readable_rooms",
    "room_for",
    "room_state",
    "room_teachers",
    "school_day",
    "taught_rooms",
]
