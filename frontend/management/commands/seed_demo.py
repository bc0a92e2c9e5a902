"""`manage.py seed_demo`: a demo school, imported through the real OneRoster import. Idempotent.

It lives in frontend/, the top layer, because it sets up every layer below: the roster, the
school's settings and its acceptable-use policy.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone
from django_scopes import scopes_disabled

from audit.services import record
from classes.models import Cohort, Enrollment, School, SchoolClass, StaffRole, User
from classes.roster_import import import_bundle
from classes.rostergen import RosterSpec, school_year_end, write_bundle
from classes.services import attach_to_cohort, change_school_settings, enroll, grant_role
from messaging.services import current_policy, publish_policy
from moderation.models import ModerationSettings

DEMO_PASSWORD = "commonroom-demo"  # noqa: S105  (printed for the demo; never used outside it)
PREFIX = "demo"


DEMO_SIGN_IN_MESSAGE = (
    "Welcome to the Commonroom demo school. Everything you write here is seen by your class and its teachers."
)
DEMO_POLICY = """Commonroom is part of school. Everything you write is seen by your class or year group and by the
staff responsible for it, and the school keeps a record of it.

- Be kind. No bullying, teasing or name-calling, here or about anyone here.
- Keep personal details private: no addresses, phone numbers, or photos of other people.
- Keep to schoolwork and school life. No arranging to meet anyone outside school.
- If something worries you, use "Report" or talk to a member of staff you trust.

Staff can remove messages, mute someone or lock a room when this policy is not followed."""


def _staff(username: str, given: str, family: str) -> dict[str, str]:
    return {
        "sourcedId": f"{PREFIX}-{username}",
        "enabledUser": "true",
        "orgSourcedIds": f"{PREFIX}-school-0",
        "role": "teacher" if username == "demo.teacher" else "administrator",
        "username": username,
        "givenName": given,
        "familyName": family,
        "email": f"{username}@example.org",
    }


DEMO_HELP_SOURCES = "Childline: 0800 1111\nSamaritans: 116 123"


class Command(BaseCommand):
    help = "Create (or bring up to date) the demo school and print one login per role."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quiet", action="store_true", help="Do not print the logins.")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Seed although DEBUG is off (the demo logins have a published password).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "seed_demo creates accounts with a published password, so it runs only with DEBUG on (or --force)."
            )
        year = school_year_end(timezone.localdate())
        spec = RosterSpec(
            prefix=PREFIX,
            year_end=year,
            grades=(11, 12),
            students_per_grade=30,
            subjects_per_student=3,
            class_size=30,
            extra_users=[
                _staff("demo.teacher", "Tom", "Teacher"),
                _staff("demo.moderator", "Maya", "Moderator"),
                _staff("demo.safeguarding", "Sara", "Safeguarding"),
                _staff("demo.admin", "Alex", "Admin"),
            ],
        )
        with tempfile.TemporaryDirectory() as folder:
            bundle = Path(folder) / "demo-bundle"
            write_bundle(bundle, spec)
            result = import_bundle(bundle, source_name="demo roster")
        with scopes_disabled(), transaction.atomic():
            school = School.objects.get(sourced_id=f"{PREFIX}-school-0")
            people = {u.username: u for u in User.objects.filter(school=school, username__startswith="demo.")}
            self._demo_classes(people)
            grant_role(actor=None, school=school, user=people["demo.moderator"], role=StaffRole.Role.MODERATOR)
            grant_role(
                actor=None, school=school, user=people["demo.safeguarding"], role=StaffRole.Role.SAFEGUARDING_LEAD
            )
            grant_role(actor=None, school=school, user=people["demo.admin"], role=StaffRole.Role.SCHOOL_ADMIN)
            # The demo teacher is attached to both cohorts (a head of year), so their rooms have an adult.
            for cohort in Cohort.objects.filter(school=school):
                attach_to_cohort(actor=None, cohort=cohort, user=people["demo.teacher"])
            # The demo chats straight away: class rooms start open in the demo school.
            change_school_settings(
                actor=None, school=school, class_rooms_start_open=True, sign_in_message=DEMO_SIGN_IN_MESSAGE
            )
            # Where a student who tells of self-harm or abuse is pointed to at once: what a UK school would
            # use, as placeholders a real school replaces with its own.
            moderation, _ = ModerationSettings.objects.get_or_create(school=school)
            if moderation.help_sources != DEMO_HELP_SOURCES:
                moderation.help_sources = DEMO_HELP_SOURCES
                moderation.save(update_fields=["help_sources"])
                record(
                    "moderationsettings.updated",
                    school_id=school.pk,
                    actor=None,
                    target=moderation,
                    payload={"fields": ["help_sources"], "via": "seed_demo"},
                )
            # A first visit shows the acceptable-use policy, as it would in a real school.
            if current_policy(people["demo.teacher"]) is None:
                publish_policy(actor=None, school_id=school.pk, text=DEMO_POLICY)
            # The student printed shares a class with the demo teacher, so the two can talk.
            shared = Enrollment.objects.filter(user=people["demo.teacher"], active=True).values("school_class")
            student = (
                User.objects.filter(
                    school=school,
                    role=User.Role.STUDENT,
                    enrollments__school_class__in=shared,
                    enrollments__active=True,
                )
                .order_by("username")
                .first()
            )
            if student is None:
                raise CommandError("the demo roster has no students")
            logins = [
                ("student", student),
                ("teacher", people["demo.teacher"]),
                ("moderator", people["demo.moderator"]),
                ("safeguarding lead", people["demo.safeguarding"]),
                ("school admin", people["demo.admin"]),
            ]
            for _, user in logins:
                if not user.check_password(DEMO_PASSWORD):
                    user.set_password(DEMO_PASSWORD)
                    user.save(update_fields=["password"])
            operator = User.objects.filter(username="demo.operator").first()
            if operator is None:
                operator = User.objects.create_superuser("demo.operator", password=DEMO_PASSWORD)
            cohorts = ", ".join(c.name for c in Cohort.objects.filter(school=school))
        if options["quiet"]:
            return
        created = sum(c["created"] for c in result.counts.values())
        self.stdout.write(f"Demo school: {school.name} (id {school.pk}); cohorts {cohorts}; {created} records created.")
        self.stdout.write(f"Demo logins (password for all: {DEMO_PASSWORD}):")
        for role, user in [*logins, ("platform operator", operator)]:
            self.stdout.write(f"  {role:<18} {user.username}")

    def _demo_classes(self, people: dict[str, User]) -> None:
        """Give the named demo teacher a class of their own, beside the generated teachers."""
        teacher = people["demo.teacher"]
        if Enrollment.objects.filter(user=teacher, active=True).exists():
            return
        school_class = SchoolClass.objects.filter(school=teacher.school, status=SchoolClass.Status.ACTIVE).first()
        if school_class is not None:
            enroll(actor=None, school_class=school_class, user=teacher, role=Enrollment.Role.TEACHER)
