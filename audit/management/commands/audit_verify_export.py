"""`manage.py audit_verify_export FILE`: check an export (a ZIP with manifest.json) against the audit log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import checkpoints, manifest
from audit.services import verify_chain


class Command(BaseCommand):
    help = (
        "Check an export from Commonroom: its data file is unchanged, every audit event its manifest names is "
        "still in the log with the same hash, and the chain verifies (and matches its checkpoints, if configured). "
        "Exits 0 when all holds, 1 otherwise."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The export's ZIP file.")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        try:
            export = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        result = manifest.check(export)
        chain = manifest.chain_of(export)
        problems = list(result.problems)
        if chain:
            report = verify_chain(chain)
            if not report.intact:
                problems.append(f"the chain is broken: {report.finding}")
            else:
                try:
                    _, finding = checkpoints.check_chain(chain, checkpoints.public_key())
                except checkpoints.CheckpointError:
                    finding = None  # no checkpoint key here: the chain's own check stands
                if finding is not None:
                    problems.append(str(finding))
        for problem in problems:
            self.stderr.write(f"NOT VERIFIED {problem}")
        if problems:
            sys.exit(1)
        self.stdout.write(f"verified: {path.name} matches {result.events} audit event(s) of {chain}")
