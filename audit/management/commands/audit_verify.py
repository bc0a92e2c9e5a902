"""`manage.py audit_verify [--school ID]`: recompute the audit chains; exit 1 naming the first broken event."""

from __future__ import annotations

import sys
import time
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import checkpoints
from audit.services import chains, verify_chain

# audit/ sits below classes/ and does not import it; the school model is looked up by name.
School: Any = apps.get_model("classes", "School")


class Command(BaseCommand):
    help = (
        "Verify the hash chains of the audit log, and each chain against its signed checkpoints when a "
        "checkpoint key is configured. Exits 0 when every chain is intact, 1 otherwise."
    )

    def _public_key(self) -> Any:
        """The key that verifies checkpoints; None (with a note) when no checkpoint key is configured."""
        if not settings.COMMONROOM_CHECKPOINT_KEY and not settings.COMMONROOM_CHECKPOINT_PUBLIC_KEY:
            self.stdout.write("checkpoints not checked: no checkpoint key is configured")
            return None
        try:
            return checkpoints.public_key()
        except checkpoints.CheckpointError as exc:  # configured but unreadable: never pass silently
            raise CommandError(str(exc)) from exc

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--school", type=int, help="Verify only this school's chain.")

    def handle(self, *args: Any, **options: Any) -> None:
        school_id = options["school"]
        if school_id is not None and not School.objects.with_scopes_disabled().filter(pk=school_id).exists():
            raise CommandError(f"--school: there is no school with id {school_id}.")
        key = self._public_key()
        started = time.perf_counter()
        broken = 0
        total = 0
        for chain in chains(options["school"]):
            report = verify_chain(chain)
            total += report.events
            if not report.intact:
                broken += 1
                self.stderr.write(f"TAMPERED {report.finding}")
                continue
            checked, finding = checkpoints.check_chain(chain, key) if key is not None else (0, None)
            if finding is not None:
                broken += 1
                self.stderr.write(f"TAMPERED {finding}")
                continue
            against = f", matches {checked} checkpoint(s)" if checked else ""
            self.stdout.write(f"{chain}: intact ({report.events} events{against})")
        elapsed = time.perf_counter() - started
        self.stdout.write(f"checked {total} events in {elapsed:.2f} s")
        if broken:
            sys.exit(1)
