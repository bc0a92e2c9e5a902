"""Keeping rooms in step with the roster: one room for every class and every cohort."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django_scopes import scopes_disabled

from audit.services import Entry, record_many
from classes.models import Cohort, SchoolClass
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
