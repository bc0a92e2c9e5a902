"""`manage.py screen [--school ID]`: screen messages, one per line of standard input, one JSON line out each."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_scopes import scopes_disabled

from classes.models import School
from moderation.rules import screen_for


class Command(BaseCommand):
    help = (
        "Screen messages read one per line from standard input; print one JSON object per line: the verdict, "
        "the categories matched with their severity, and the matched spans (start and end in the line). "
        "With --school, the school's own actions, severities and phrases apply."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--school", type=int, help="The id of the school whose screening rules to use.")

    def handle(self, *args: Any, **options: Any) -> None:
        school_id = options.get("school")
        if school_id is not None:
            with scopes_disabled():
                if not School.objects.filter(pk=school_id).exists():
                    raise CommandError(f"There is no school with id {school_id}.")
        for line in sys.stdin:
            text = line.rstrip("\r\n")
            self.stdout.write(json.dumps(screen_for(text, school_id).as_dict(), ensure_ascii=False))
