"""Moderation's records: each school's screening rules and escalation settings, and cases.

A case gathers what is worrying about one message: the flag screening raised, the reports people
made, the notes of the staff who handled it. It climbs levels (1: the room's teachers, 2: the
school's moderators, 3: the safeguarding lead) by hand or when nobody acknowledges it in time.
Its history is the audit log: every change to a case is an audit event about it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django_scopes import ScopedManager

from audit import looks
from classes.models import School, User
from messaging.models import Message, Room
from moderation.screening import CATEGORIES, Action

LEVELS = {1: "Class teachers", 2: "Moderators", 3: "Safeguarding lead"}


class ModerationSettings(models.Model):
    """How a school's cases are escalated. A school without a row has the defaults."""

    school = models.OneToOneField(School, on_delete=models.PROTECT, related_name="moderation_settings")
    level_1_minutes = models.PositiveSmallIntegerField(
        default=30, help_text="Minutes the room's teachers have to acknowledge a case before it goes to moderators."
    )
    level_2_minutes = models.PositiveSmallIntegerField(
        default=15, help_text="Minutes moderators have to acknowledge a case before it goes to the safeguarding lead."
    )
    level_3_minutes = models.PositiveSmallIntegerField(
        default=5, help_text="Minutes the safeguarding lead has before the escalation contacts are emailed."
    )
    escalation_contacts = models.TextField(
        blank=True,
        help_text="Email addresses, one per line: told when a safeguarding lead's case waits too long.",
    )
    allegations_contact = models.ForeignKey(
        User,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who handles cases about a member of staff. Empty: the safeguarding lead.",
    )
    tell_reasons = models.BooleanField(
        default=True,
        help_text="Show the person affected the reason for an action taken from a case (otherwise a general notice).",
    )
    help_sources = models.TextField(
        blank=True,
        max_length=2000,
        help_text="Where students can find help now, one per line (such as 'Childline: 0800 1111'): a student "
        "whose message tells of self-harm or abuse is answered at once with these.",
    )

    objects: ClassVar[models.Manager[ModerationSettings]] = ScopedManager(school="school")

    class Meta:
        verbose_name = "moderation settings"
        verbose_name_plural = "moderation settings"

    def __str__(self) -> str:
        return "moderation settings"

    def help_lines(self) -> list[str]:
        return [line.strip() for line in self.help_sources.splitlines() if line.strip()]

    def clean(self) -> None:
        """The person named for allegations against staff is a member of staff of the school who can act in
        any of its rooms (the safeguarding lead, or a moderator of the whole school), and not its admin
        (who provisions the school and does not read its children's messages)."""
        contact = self.allegations_contact
        if contact is None:
            return
        # A school admin's form has no school yet (the admin puts the row in their school, and offers only
        # its people); an operator's form names the school.
        elsewhere = self.school_id is not None and contact.school_id != self.school_id
        if elsewhere or contact.role == User.Role.STUDENT:
            raise ValidationError({"allegations_contact": "Name a member of staff of this school."})
        roles = contact.staff_roles.filter(active=True)
        if roles.filter(role="school_admin").exists():
            raise ValidationError({"allegations_contact": "A school admin does not handle cases; name someone else."})
        whole_school = roles.filter(role="safeguarding_lead").exists() or (
            roles.filter(role="moderator", cohorts__isnull=True).exists()
        )
        if not whole_school:
            raise ValidationError(
                {
                    "allegations_contact": "Name the safeguarding lead or a moderator of the whole school: "
                    "whoever handles these cases must be able to act in any room."
                }
            )

    def deadline_minutes(self, level: int) -> int:
        return {1: self.level_1_minutes, 2: self.level_2_minutes, 3: self.level_3_minutes}[level]

    def contacts(self) -> list[str]:
        return [line.strip() for line in self.escalation_contacts.splitlines() if line.strip()]


class ScreeningRule(models.Model):
    """A school's changes to one screening category: its action, its severity, and phrases of its own."""

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")
    category = models.CharField(max_length=32, choices=[(key, c.label) for key, c in CATEGORIES.items()])
    action = models.CharField(
        max_length=8, blank=True, choices=[(a.value, a.value.title()) for a in Action], help_text="Empty: the default."
    )
    severity = models.PositiveSmallIntegerField(
        null=True, blank=True, choices=[(n, str(n)) for n in range(1, 5)], help_text="1 (low) to 4. Empty: the default."
    )
    phrases = models.TextField(blank=True, help_text="Words and phrases to add to the category, one per line.")
    updated = models.DateTimeField(auto_now=True)

    objects: ClassVar[models.Manager[ScreeningRule]] = ScopedManager(school="school")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["school", "category"], name="screening_rule_per_category")]

    def __str__(self) -> str:
        return f"screening of {self.get_category_display()}"

    def phrase_list(self) -> tuple[str, ...]:
        return tuple(line.strip() for line in self.phrases.splitlines() if line.strip())


class Case(models.Model):
    class State(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        ESCALATED = "escalated", "Escalated"
        RESOLVED = "resolved", "Resolved"

    class Outcome(models.TextChoices):
        NO_CONCERN = "no_concern", "No concern on review"
        SPOKEN_TO = "spoken_to", "Spoken to the people involved"
        ACTION_TAKEN = "action_taken", "Action taken in Commonroom"
        PARENTS_CONTACTED = "parents_contacted", "Parents or carers contacted"
        REFERRED = "referred", "Referred (children's services, police or another agency)"

    WAITING = (State.OPEN, State.ESCALATED)  # not yet acknowledged at its level: the clock runs

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")
    room = models.ForeignKey(Room, on_delete=models.PROTECT, related_name="+")
    message = models.ForeignKey(Message, on_delete=models.PROTECT, related_name="cases")
    subject = models.ForeignKey(
        User, on_delete=models.PROTECT, related_name="+", help_text="The person the case is about: the author."
    )
    staff_conduct = models.BooleanField(default=False, help_text="About a member of staff: never routed to them.")
    severity = models.PositiveSmallIntegerField()
    categories = models.JSONField(default=list)
    level = models.PositiveSmallIntegerField(choices=list(LEVELS.items()))
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    outcome = models.CharField(max_length=24, choices=Outcome.choices, blank=True)
    assignee = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    opened = models.DateTimeField()
    level_since = models.DateTimeField(help_text="When the case reached its level: its deadline runs from here.")
    acknowledged = models.DateTimeField(null=True, blank=True)
    resolved = models.DateTimeField(null=True, blank=True)
    contacts_emailed = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[models.Manager[Case]] = ScopedManager(school="school")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["message"], condition=~Q(state="resolved"), name="one_unresolved_case_per_message"
            ),
            models.CheckConstraint(condition=Q(level__gte=1, level__lte=3), name="case_level_1_to_3"),
        ]
        indexes = [models.Index(fields=["school", "state", "level"])]

    def __str__(self) -> str:
        return f"case {self.pk}"

    def deadline(self, settings: ModerationSettings) -> datetime | None:
        """When the case climbs (or, at level 3, the contacts are emailed) unless someone acknowledges it."""
        if self.state not in self.WAITING:
            return None
        return self.level_since + timedelta(minutes=settings.deadline_minutes(self.level))


class Report(models.Model):
    """Why a case is open: a person's report, or screening's flag (no reporter)."""

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="+")
    reporter = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    category = models.CharField(max_length=32)
    note = models.TextField(blank=True)
    created = models.DateTimeField()

    objects: ClassVar[models.Manager[Report]] = ScopedManager(school="school")

    def __str__(self) -> str:
        return f"report on case {self.case_id}"


class CaseNote(models.Model):
    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="+")
    author = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    text = models.TextField()
    created = models.DateTimeField()

    objects: ClassVar[models.Manager[CaseNote]] = ScopedManager(school="school")

    def __str__(self) -> str:
        return f"note on case {self.case_id}"


class Suspension(models.Model):
    """An account suspended from a case, with the reason given (the person is shown it where the school's
    `tell_reasons` allows, a general notice otherwise); `ended` when it was lifted."""

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    case = models.ForeignKey(Case, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=500)
    suspended_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created = models.DateTimeField()
    ended = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[models.Manager[Suspension]] = ScopedManager(school="school")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user"], condition=Q(ended__isnull=True), name="one_suspension_at_a_time")
        ]

    def __str__(self) -> str:
        return f"suspension of {self.user_id}"


class AccessRecord(models.Model):
    """One look at messages by someone who takes no part in them: a review page (a search, a chronology,
    an export), a room read by a moderator or the safeguarding lead who is not its member, the audit log
    read by a platform operator. Who, why, what, and whose messages it showed. "Who looked at this
    student's messages" reads these. (An operator has no school: their look at the audit log is recorded
    once for each school whose events it showed.)"""

    Reason = looks.Reason  # one definition, in audit/, where every place that asks for a reason can use it

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")
    reviewer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    reason_text = models.CharField(max_length=500, blank=True)
    kind = models.CharField(max_length=32, help_text="What was viewed: search, chronology, access, export.")
    query = models.JSONField(default=dict, blank=True, help_text="What was asked: the filters, the person.")
    subjects = models.ManyToManyField(User, blank=True, related_name="+", help_text="Whose messages it showed.")
    created = models.DateTimeField()

    objects: ClassVar[models.Manager[AccessRecord]] = ScopedManager(school="school")

    class Meta:
        indexes = [models.Index(fields=["school", "created"])]

    def __str__(self) -> str:
        return f"{self.kind} by {self.reviewer_id}"
