"""The people and classes of a school.

A School is the tenant: every other model here belongs to exactly one school
and its default manager is scoped to the active school (django-scopes), so a
query that forgets the school raises ScopeError instead of reading another
school's rows. Code that legitimately spans schools (the roster import, the
platform admin, migrations) says so with `scopes_disabled()`.

Nothing here is ever deleted by provisioning: people, classes and enrollments
are deactivated or ended, so the audit log keeps pointing at real rows.
"""

from __future__ import annotations

import zoneinfo
from datetime import date
from typing import ClassVar

from django.contrib.auth.models import AbstractBaseUser, PermissionsMixin, UserManager
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_scopes import ScopedManager


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone (use an IANA name such as Europe/London).")


class Organisation(models.Model):
    """A body above schools (a district, a trust or a state), or a department inside one school."""

    class Kind(models.TextChoices):
        DISTRICT = "district", "District"
        TRUST = "trust", "Trust"
        LOCAL = "local", "Local"
        STATE = "state", "State"
        NATIONAL = "national", "National"
        DEPARTMENT = "department", "Department of a school"

    sourced_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.DISTRICT)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    school = models.ForeignKey(
        "School",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="departments",
        help_text="For a department.",
    )
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name


class School(models.Model):
    """The tenant. Nothing of one school is visible from another."""

    sourced_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    name = models.CharField(max_length=255)
    identifier = models.CharField(max_length=255, blank=True, help_text="The school's own code (OneRoster identifier).")
    organisation = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.PROTECT, related_name="schools"
    )
    time_zone = models.CharField(max_length=64, default="Europe/London", validators=[validate_time_zone])
    final_grade = models.PositiveSmallIntegerField(
        default=12, help_text="The last grade before students graduate; cohorts are named from it."
    )
    alumni_keep_access = models.BooleanField(
        default=True,
        help_text="When a cohort graduates, its students keep read access to their cohort's history as alumni.",
    )
    # Chat policy (read by messaging/).
    class_rooms_start_open = models.BooleanField(
        default=False,
        help_text="A class room is open from the start; otherwise it waits for one of its teachers to open it.",
    )
    quiet_hours_start = models.TimeField(
        null=True, blank=True, help_text="From this time (school's time zone) posting is closed until the end time."
    )
    quiet_hours_end = models.TimeField(null=True, blank=True, help_text="Posting opens again at this time.")
    edit_window_minutes = models.PositiveSmallIntegerField(
        default=15, help_text="For how long authors may edit or delete their own messages."
    )
    under_13_needs_consent = models.BooleanField(
        default=True, help_text="Students under 13 may read but not post until parental consent is recorded."
    )
    sign_in_message = models.TextField(
        blank=True, max_length=1000, help_text="Shown on the school's sign-in page (plain text, no links)."
    )
    active = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[models.Manager[School]] = ScopedManager(school="pk")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractBaseUser, PermissionsMixin):
    """A person: a student or a member of staff of one school, or a platform operator (no school).

    Authentication looks people up by username across the platform, so the
    default manager is not school-scoped; reach people of a school through
    `classes.access`, its scoped relations, or `User.objects.filter(school=...)`.
    """

    class Role(models.TextChoices):
        STUDENT = "student", "Student"
        TEACHER = "teacher", "Teacher"
        AIDE = "aide", "Aide"
        ADMINISTRATOR = "administrator", "Administrator"
        STAFF = "staff", "Other staff"

    username = models.CharField(max_length=150, unique=True, validators=[UnicodeUsernameValidator()])
    email = models.EmailField(blank=True)
    sourced_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    school = models.ForeignKey(School, null=True, blank=True, on_delete=models.PROTECT, related_name="people")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.STUDENT)
    given_name = models.CharField(max_length=150, blank=True)
    family_name = models.CharField(max_length=150, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    grade = models.CharField(max_length=8, blank=True, help_text="Grade as the roster gives it, such as 09.")
    enabled = models.BooleanField(default=True, help_text="Disabled people cannot sign in.")
    parental_consent_on = models.DateField(
        null=True, blank=True, help_text="When a parent's consent to posting was recorded (for students under 13)."
    )
    suspended = models.BooleanField(
        default=False,
        help_text="Suspended from a moderation case: cannot sign in, whatever the roster says.",
    )
    is_staff = models.BooleanField(default=False, help_text="May sign in to the platform admin.")
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "username"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ["family_name", "given_name", "username"]

    def __str__(self) -> str:
        return self.full_name or self.username

    @property
    def is_active(self) -> bool:  # type: ignore[override]  # Django reads this attribute for sign-in
        return self.enabled and not self.suspended

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()

    def get_full_name(self) -> str:
        return self.full_name

    def get_short_name(self) -> str:
        return self.given_name or self.username

    @property
    def is_student(self) -> bool:
        return self.role == self.Role.STUDENT


class AcademicSession(models.Model):
    """A school year, semester, term or grading period."""

    class Kind(models.TextChoices):
        SCHOOL_YEAR = "schoolYear", "School year"
        SEMESTER = "semester", "Semester"
        TERM = "term", "Term"
        GRADING_PERIOD = "gradingPeriod", "Grading period"

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="sessions")
    sourced_id = models.CharField(max_length=255, null=True, blank=True)
    title = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    start_date = models.DateField()
    end_date = models.DateField()
    school_year = models.PositiveSmallIntegerField(help_text="The calendar year in which the school year ends.")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    active = models.BooleanField(default=True)
    closed = models.BooleanField(
        default=False, help_text="The year has been closed (cohort graduated, classes archived)."
    )

    objects: ClassVar[models.Manager[AcademicSession]] = ScopedManager(school="school")

    class Meta:
        ordering = ["start_date", "title"]
        constraints = [
            models.UniqueConstraint(fields=["school", "sourced_id"], name="session_unique_sourced_id_per_school"),
            models.CheckConstraint(condition=Q(end_date__gte=models.F("start_date")), name="session_ends_after_start"),
        ]

    def __str__(self) -> str:
        return self.title


class Cohort(models.Model):
    """A year group, named by the year it graduates: "Class of 2027"."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        GRADUATED = "graduated", "Graduated"
        ARCHIVED = "archived", "Archived"

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="cohorts")
    graduation_year = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    graduated_on = models.DateField(null=True, blank=True)

    objects: ClassVar[models.Manager[Cohort]] = ScopedManager(school="school")

    class Meta:
        ordering = ["graduation_year"]
        constraints = [
            models.UniqueConstraint(fields=["school", "graduation_year"], name="cohort_unique_year_per_school"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        return f"Class of {self.graduation_year}"


class CohortMembership(models.Model):
    """A student's place in a cohort. At most one current membership per student."""

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")
    cohort = models.ForeignKey(Cohort, on_delete=models.PROTECT, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="cohort_memberships")
    begin_date = models.DateField(default=date.today)
    end_date = models.DateField(null=True, blank=True)

    objects: ClassVar[models.Manager[CohortMembership]] = ScopedManager(school="school")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["cohort", "user"], name="membership_unique_per_cohort"),
            models.UniqueConstraint(
                fields=["user"], condition=Q(end_date__isnull=True), name="membership_one_current_cohort"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.cohort}"


class SchoolClass(models.Model):
    """A class or section: the people taught together, and (from messaging) its room."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        ARCHIVED = "archived", "Archived"

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="classes")
    sourced_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    title = models.CharField(max_length=255)
    code = models.CharField(max_length=64, blank=True)
    course_sourced_id = models.CharField(max_length=255, blank=True)
    course_title = models.CharField(max_length=255, blank=True)
    course_code = models.CharField(max_length=64, blank=True)
    terms = models.ManyToManyField(AcademicSession, blank=True, related_name="classes")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    archived_on = models.DateField(
        null=True, blank=True, help_text="When the class ended; its members of that day keep read access to its room."
    )

    objects: ClassVar[models.Manager[SchoolClass]] = ScopedManager(school="school")

    class Meta:
        verbose_name = "class"
        verbose_name_plural = "classes"
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class Enrollment(models.Model):
    """A person in a class, as a student, a teacher or an aide, between two dates."""

    class Role(models.TextChoices):
        STUDENT = "student", "Student"
        TEACHER = "teacher", "Teacher"
        AIDE = "aide", "Aide"

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")
    sourced_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    school_class = models.ForeignKey(SchoolClass, on_delete=models.PROTECT, related_name="enrollments")
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="enrollments")
    role = models.CharField(max_length=16, choices=Role.choices)
    primary = models.BooleanField(default=False)
    begin_date = models.DateField(null=True, blank=True)
    end_date = models.DateField(null=True, blank=True)
    active = models.BooleanField(default=True, help_text="Ended enrollments are kept, never deleted.")

    objects: ClassVar[models.Manager[Enrollment]] = ScopedManager(school="school")

    class Meta:
        indexes = [
            models.Index(fields=["school_class", "active"]),
            models.Index(fields=["user", "active"]),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) in {self.school_class}"


class CohortStaff(models.Model):
    """A member of staff attached to a cohort (a head of year, a tutor): a reader of the cohort's room."""

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")
    cohort = models.ForeignKey(Cohort, on_delete=models.PROTECT, related_name="staff")
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="cohort_staff")
    active = models.BooleanField(default=True)

    objects: ClassVar[models.Manager[CohortStaff]] = ScopedManager(school="school")

    class Meta:
        verbose_name_plural = "cohort staff"
        constraints = [models.UniqueConstraint(fields=["cohort", "user"], name="cohort_staff_unique")]

    def __str__(self) -> str:
        return f"{self.user} with {self.cohort}"


class StaffRole(models.Model):
    """What a member of staff may do across their school.

    Roles given by the roster import (`source=roster`) follow the roster;
    roles given by hand are never touched by an import.
    """

    class Role(models.TextChoices):
        TEACHER = "teacher", "Teacher"
        MODERATOR = "moderator", "Moderator"
        SAFEGUARDING_LEAD = "safeguarding_lead", "Safeguarding lead"
        SCHOOL_ADMIN = "school_admin", "School admin"

    class Source(models.TextChoices):
        ROSTER = "roster", "Roster import"
        MANUAL = "manual", "Given by an admin"

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="staff_roles")
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="staff_roles")
    role = models.CharField(max_length=24, choices=Role.choices)
    cohorts = models.ManyToManyField(
        Cohort,
        blank=True,
        related_name="moderators",
        help_text="For a moderator: the cohorts they look after (none means all).",
    )
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.MANUAL)
    active = models.BooleanField(default=True)

    objects: ClassVar[models.Manager[StaffRole]] = ScopedManager(school="school")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["school", "user", "role"], name="staff_role_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.get_role_display()}"
