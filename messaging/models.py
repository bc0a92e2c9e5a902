"""Rooms: every class and every cohort has exactly one, and there is no other kind."""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.db.models import Q
from django_scopes import ScopedManager

from classes.models import Cohort, School, SchoolClass


class Room(models.Model):
    """The conversation of one class or one cohort.

    A database constraint makes a room belong to exactly one class or one
    cohort. Rooms are made only by `messaging.rooms.sync_rooms`, which follows
    provisioning; no form, frame or admin action creates one.
    """

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="rooms")
    school_class = models.OneToOneField(
        SchoolClass, null=True, blank=True, on_delete=models.PROTECT, related_name="room"
    )
    cohort = models.OneToOneField(Cohort, null=True, blank=True, on_delete=models.PROTECT, related_name="room")
    created = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[models.Manager[Room]] = ScopedManager(school="school")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(school_class__isnull=False) & Q(cohort__isnull=True))
                | (Q(school_class__isnull=True) & Q(cohort__isnull=False)),
                name="room_belongs_to_one_class_or_one_cohort",
            ),
        ]

    def __str__(self) -> str:
        return f"room of {self.kind} {self.owner_id}"

    @property
    def owner_id(self) -> int:
        """The id of the class or cohort the room belongs to."""
        owner = self.school_class_id if self.school_class_id is not None else self.cohort_id
        if owner is None:  # the check constraint makes this impossible for a saved room
            raise ValueError("a room belongs to a class or a cohort")
        return owner

    @property
    def kind(self) -> str:
        return "class" if self.school_class_id is not None else "cohort"
