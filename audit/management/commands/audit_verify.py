"""`manage.py audit_verify [--school ID]`: recompute the audit chains, check them against their checkpoints
and the records the log describes against the log; exit 1 naming every problem found."""

from __future__ import annotations

import sys
import time
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import checkpoints
from audit.records import RecordFinding, record_checks
from audit.services import chains, verify_chain

# audit/ sits below classes/ and does not import it; the school model is looked up by name.
School: Any = apps.get_model("classes", "School")

SHOWN = 100  # findings of one record check written out; the rest are counted


class _Tally:
    """Writes a record check's findings (the first SHOWN of them) and counts them all."""

    def __init__(self, command: BaseCommand) -> None:
        self.command = command
        self.count = 0

    def __call__(self, finding: RecordFinding) -> None:
        self.count += 1
        if self.count <= SHOWN:
            self.command.stderr.write(f"TAMPERED {finding}")


class Command(BaseCommand):
    help = (
        "Verify the hash chains of the audit log, each chain against its signed checkpoints (the files and "
        "the database's record of them) when a checkpoint key is configured, and the records the log describes "
        "(COMMONROOM_RECORD_CHECKS: every message's text) against the log. Exits 0 when all is intact, 1 otherwise."
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
        parser.add_argument("--school", type=int, help="Verify only this school's chain and records.")

    def handle(self, *args: Any, **options: Any) -> None:
        school_id = options["school"]
        if school_id is not None and not School.objects.with_scopes_disabled().filter(pk=school_id).exists():
            raise CommandError(f"--school: there is no school with id {school_id}.")
        key = self._public_key()
        started = time.perf_counter()
        names = chains(school_id)
        if key is not None and school_id is None:  # a chain removed whole still has its checkpoints
            names = sorted(set(names) | checkpoints.checkpointed_chains(key))
        broken, total = self._verify_chains(names, key)
        self.stdout.write(f"checked {total} events in {time.perf_counter() - started:.2f} s")
        broken += self._verify_records(school_id)
        if broken:
            sys.exit(1)

    def _verify_chains(self, names: list[str], key: Any) -> tuple[int, int]:
        """Verify each chain, then against its checkpoints; answer how many are broken, and the events read."""
        broken = 0
        total = 0
        for chain in names:
            report = verify_chain(chain)
            total += report.events
            if not report.intact:
                broken += 1
                self.stderr.write(f"TAMPERED {report.finding}")
                continue
            checked, finding = checkpoints.check_chain(chain, key) if key is not None else (0, None)
            findings = [finding] if finding is not None else []
            findings += checkpoints.check_records(chain, key) if key is not None else []
            for problem in findings:
                self.stderr.write(f"TAMPERED {problem}")
            if findings:
                broken += 1
                continue
            against = f", matches {checked} checkpoint(s)" if checked else ""
            self.stdout.write(f"{chain}: intact ({report.events} events{against})")
        return broken, total

    def _verify_records(self, school_id: int | None) -> int:
        """Run each record check; answer how many found something."""
        broken = 0
        for name, check in record_checks():
            started = time.perf_counter()
            tally = _Tally(self)
            checked = check(school_id, tally)
            elapsed = time.perf_counter() - started
            if not tally.count:
                self.stdout.write(f"{name}: {checked} record(s) match the audit log ({elapsed:.2f} s)")
                continue
            broken += 1
            if tally.count > SHOWN:
                self.stderr.write(f"TAMPERED {name}: {tally.count - SHOWN} more finding(s) not shown")
            self.stderr.write(f"{name}: {tally.count} finding(s) in {checked} record(s) checked")
        return broken
