"""`manage.py escalate_overdue`: run the case clock once (for cron, e.g. every minute)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from moderation.cases import escalate_overdue


class Command(BaseCommand):
    help = (
        "Escalate every case that was not acknowledged before its level's deadline; at the safeguarding lead's "
        "level, email the school's escalation contacts. Safe to run while daphne's own clock runs."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        tick = escalate_overdue()
        self.stdout.write(f"escalated {len(tick.escalated)} case(s), emailed contacts for {len(tick.emailed)} case(s)")
