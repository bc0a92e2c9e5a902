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

    def _checkpoint_problems(self, chain: str) -> list[str]:
        """The chain against its checkpoints, the files' and the database's record of them."""
        try:
            key = checkpoints.public_key()
        except checkpoints.CheckpointError:
            return []  # no checkpoint key here: the chain's own check stands
        _, finding = checkpoints.check_chain(chain, key)
        found = [finding] if finding is not None else []
        return [str(problem) for problem in [*found, *checkpoints.check_records(chain, key)]]

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
                problems.extend(self._checkpoint_problems(chain))
        for problem in problems:
            self.stderr.write(f"NOT VERIFIED {problem}")
        if problems:
            sys.exit(1)
        self.stdout.write(f"verified: {path.name} matches {result.events} audit event(s) of {chain}")
