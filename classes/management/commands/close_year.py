"""`manage.py close_year --school ID`: graduate the final cohort, archive the year's classes."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_scopes import scopes_disabled

from classes.access import school_scope
from classes.models import School, User
from classes.services import ProvisioningError, close_year


class Command(BaseCommand):
    help = "Close a school's current school year in one audited step."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--school", type=int, required=True, help="The school's id.")
        parser.add_argument("--actor", help="Username of the person closing the year (recorded in the audit log).")
        parser.add_argument(
            "--early", action="store_true", help="Close the year although it ends more than eight weeks from today."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with scopes_disabled():
            school = School.objects.filter(pk=options["school"]).first()
        if school is None:
            raise CommandError(f"--school: there is no school with id {options['school']}.")
        actor = None
        if options["actor"]:
            actor = User.objects.filter(username=options["actor"]).first()
            if actor is None:
                raise CommandError(f"--actor: no account named {options['actor']!r}.")
        with school_scope(school):
            try:
                result = close_year(actor=actor, school=school, early=options["early"])
            except ProvisioningError as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(result.as_dict(), sort_keys=True))
