"""Rooms: every class and every cohort has exactly one, and there is no other kind."""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.db.models import Q
from django_scopes import ScopedManager

from classes.models import Cohort, School, SchoolClass, User


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
    # The teacher's choice: None until a teacher opens or closes it (then the school's default applies).
    opened = models.BooleanField(null=True, blank=True)
    locked_reason = models.CharField(max_length=500, blank=True, help_text="Set while a teacher has locked the room.")
    locked_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    last_seq = models.PositiveBigIntegerField(default=0, help_text="The sequence number of the room's last message.")

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


class Message(models.Model):
    """One message in one room, numbered by `seq` within the room without gaps.

    The body is stored exactly as sent. Edits and removals keep the row (the
    room shows a notice); the audit log keeps every version of the text.
    """

    class State(models.TextChoices):
        VISIBLE = "visible", "Visible"
        HELD = "held", "Held for review"
        REMOVED = "removed", "Removed"

    MAX_LENGTH = 4000

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")
    room = models.ForeignKey(Room, on_delete=models.PROTECT, related_name="messages")
    seq = models.PositiveBigIntegerField()
    author = models.ForeignKey(User, on_delete=models.PROTECT, related_name="messages")
    client_id = models.UUIDField(help_text="The sender's own id for the message: a resend with it changes nothing.")
    body = models.TextField()
    created = models.DateTimeField()
    edited = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.VISIBLE)
    withheld = models.BooleanField(
        default=False,
        help_text="Held by screening and not approved since: only its author and the room's moderators "
        "see it, and its removal (the state alone cannot say so once it is removed).",
    )
    removed_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    removed_reason = models.CharField(max_length=500, blank=True)
    folded = models.TextField(
        blank=True, default="", help_text="The body as search reads it (COMMONROOM_SEARCH_FOLDER): disguises undone."
    )
    author_note = models.TextField(
        blank=True,
        help_text="What Commonroom answered its author at once, privately (a cry for help is answered with "
        "the school's sources of help); shown to its author beside the message.",
    )

    objects: ClassVar[models.Manager[Message]] = ScopedManager(school="school")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="message_unique_position"),
            models.UniqueConstraint(fields=["author", "client_id"], name="message_unique_client_id"),
        ]

    def __str__(self) -> str:
        return f"message {self.room_id}#{self.seq}"


class ReadPosition(models.Model):
    """How far a person has read in a room."""

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")
    room = models.ForeignKey(Room, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    seq = models.PositiveBigIntegerField(default=0)

    objects: ClassVar[models.Manager[ReadPosition]] = ScopedManager(school="school")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="read_position_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} read {self.room_id} to {self.seq}"


class Mute(models.Model):
    """A student muted in a room by a teacher, with the reason the student is shown."""

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")
    room = models.ForeignKey(Room, on_delete=models.PROTECT, related_name="mutes")
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=500)
    muted_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    ended = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[models.Manager[Mute]] = ScopedManager(school="school")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["room", "user"], condition=Q(ended__isnull=True), name="one_mute_at_a_time"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} muted in {self.room_id}"


class AcceptableUsePolicy(models.Model):
    """A school's acceptable-use text, versioned: students accept the current version before posting."""

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")
    version = models.PositiveIntegerField()
    text = models.TextField()
    published = models.DateTimeField()

    objects: ClassVar[models.Manager[AcceptableUsePolicy]] = ScopedManager(school="school")

    class Meta:
        verbose_name = "acceptable-use policy"
        verbose_name_plural = "acceptable-use policies"
        constraints = [models.UniqueConstraint(fields=["school", "version"], name="policy_unique_version")]

    def __str__(self) -> str:
        return f"acceptable-use policy v{self.version}"


class PolicyAcceptance(models.Model):
    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")
    policy = models.ForeignKey(AcceptableUsePolicy, on_delete=models.PROTECT, related_name="acceptances")
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    accepted = models.DateTimeField()

    objects: ClassVar[models.Manager[PolicyAcceptance]] = ScopedManager(school="school")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["policy", "user"], name="acceptance_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} accepted {self.policy_id}"
