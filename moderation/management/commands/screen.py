"""`manage.py screen`: try screening on messages, one per line of standard input, one JSON line out each."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand

from moderation.screening import screen_text


class Command(BaseCommand):
    help = (
        "Screen messages read one per line from standard input; print one JSON object per line: the verdict, "
        "the categories matched with their severity, and the matched spans (start and end in the line)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for line in sys.stdin:
            text = line.rstrip("\r\n")
            self.stdout.write(json.dumps(screen_text(text).as_dict(), ensure_ascii=False))
