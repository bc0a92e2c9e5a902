"""Keeping rooms in step with the roster: one room for every class and every cohort, and every room's
state told to its sockets as soon as a change of people or of its class or cohort may have changed it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_scopes import scopes_disabled

from audit.services import Entry, record_many
from classes.models import Cohort, CohortMembership, CohortStaff, Enrollment, SchoolClass, User
from messaging import live, policy, services
from messaging.models import Room


def sync_rooms(school_ids: Iterable[int]) -> int:
    """Create the missing rooms of these schools' classes and cohorts; return how many were made.

    Runs inside the provisioning transaction that changed the roster (see
    `classes.signals.roster_changed`), so a class and its room commit together.
    Rooms are never deleted: an archived class or a graduated cohort keeps its
    room and its history.
    """
    made = 0
    with scopes_disabled():
        for school_id in sorted(set(school_ids)):
            classes = SchoolClass.objects.filter(school_id=school_id, room__isnull=True).values_list("pk", "title")
            cohorts = Cohort.objects.filter(school_id=school_id, room__isnull=True).values_list("pk", "graduation_year")
            rooms = [Room(school_id=school_id, school_class_id=pk) for pk, _ in classes]
            rooms += [Room(school_id=school_id, cohort_id=pk) for pk, _ in cohorts]
            if not rooms:
                continue
            Room.objects.bulk_create(rooms, batch_size=2000)
            labels = {("class", pk): title for pk, title in classes} | {
                ("cohort", pk): f"Class of {year}" for pk, year in cohorts
            }
            record_many(
                [
                    Entry.about(
                        "room.created",
                        room,
                        {"kind": room.kind, "of": room.owner_id},
                        label=labels[(room.kind, room.owner_id)],
                    )
                    for room in rooms
                ],
                school_id=school_id,
                fetch=False,
            )
            made += len(rooms)
    return made


def on_roster_changed(sender: Any, school_ids: Iterable[int], **kwargs: Any) -> None:
    sync_rooms(school_ids)


def rooms_of_people(user_ids: Iterable[int]) -> set[int]:
    """The rooms these people have, or had, a place in (their classes still running, their cohorts)."""
    ids = sorted(set(user_ids))
    found: set[int] = set()
    with scopes_disabled():
        for start in range(0, len(ids), 5000):
            batch = ids[start : start + 5000]
            classes = Enrollment.objects.filter(user_id__in=batch, school_class__status=SchoolClass.Status.ACTIVE)
            places = CohortMembership.objects.filter(user_id__in=batch).values("cohort_id")
            staffed = CohortStaff.objects.filter(user_id__in=batch).values("cohort_id")
            found |= set(
                Room.objects.filter(
                    Q(school_class_id__in=classes.values("school_class_id"))
                    | Q(cohort_id__in=places)
                    | Q(cohort_id__in=staffed)
                ).values_list("pk", flat=True)
            )
    return found


def push_states(room_ids: Iterable[int]) -> None:
    """Work out the state of these rooms now (`policy.room_state`) and tell each room's sockets."""
    ids = sorted(set(room_ids))
    now = timezone.now()
    with scopes_disabled():
        for start in range(0, len(ids), 2000):
            rooms = list(
                Room.objects.filter(pk__in=ids[start : start + 2000]).select_related("school", "school_class", "cohort")
            )
            people = policy.members_of(rooms, now)
            for room in rooms:
                services.publish(room, services.room_state_event(room, policy.room_state(room, now, people[room.pk])))


def _after_commit(find_rooms: Any) -> None:
    """Once the change has committed, push the state of the rooms `find_rooms()` names."""
    transaction.on_commit(lambda: push_states(find_rooms()), robust=True)


def on_people_changed(sender: Any, user_ids: Iterable[int], **kwargs: Any) -> None:
    """People's places, roles or accounts changed (`membership_changed`, `sessions_ended`)."""
    ids = set(user_ids)
    _after_commit(lambda: rooms_of_people(ids))


def on_owners_changed(sender: Any, class_ids: Iterable[int], cohort_ids: Iterable[int], **kwargs: Any) -> None:
    classes, cohorts = set(class_ids), set(cohort_ids)

    def find() -> set[int]:
        with scopes_disabled():
            rooms = Room.objects.filter(Q(school_class_id__in=classes) | Q(cohort_id__in=cohorts))
            return set(rooms.values_list("pk", flat=True))

    _after_commit(find)


def on_school_changed(sender: Any, school_id: int, **kwargs: Any) -> None:
    """A school's settings changed: its rooms' states may have, and its sockets' clocks have."""

    def deliver() -> None:
        with scopes_disabled():
            people = list(User.objects.filter(school_id=school_id).values_list("pk", flat=True))
            rooms = list(Room.objects.filter(school_id=school_id).values_list("pk", flat=True))
        live.tell_users(people, "rooms.changed")
        push_states(rooms)

    transaction.on_commit(deliver, robust=True)
