"""`manage.py import_oneroster PATH`: import a OneRoster 1.1 CSV bundle (a folder or a .zip)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from classes.models import User
from classes.oneroster import BundleError, as_json
from classes.roster_import import ENTITIES, KINDS, InvalidBundle, import_bundle

STAGES = ("reading", "schools", "sessions", "classes", "users", "cohorts", "enrollments", "audit")


class Command(BaseCommand):
    help = (
        "Import a OneRoster 1.1 CSV bundle. Checks the whole bundle first; exits 2 and writes nothing if it is invalid."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="A bundle folder or .zip file.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object with the counts.")
        parser.add_argument("--actor", help="Username of the person running the import (recorded in the audit log).")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["path"]
        as_json_output: bool = options["json"]
        actor = None
        if options["actor"]:
            actor = User.objects.filter(username=options["actor"]).first()
            if actor is None:
                raise CommandError(f"--actor: no account named {options['actor']!r}.")
        bar = None
        if not as_json_output and sys.stderr.isatty():
            bar = tqdm(total=len(STAGES), desc="import", unit="step", file=sys.stderr)

        def progress(stage: str) -> None:
            if bar is not None:
                bar.set_postfix_str(stage)
                bar.update(1)

        try:
            result = import_bundle(path, actor=actor, progress=progress)
        except BundleError as exc:
            self._fail(str(exc), as_json_output, [])
        except InvalidBundle as exc:
            for problem in exc.problems:
                self.stderr.write(str(problem))
            self._fail(
                f"the bundle has {len(exc.problems)} problem(s); nothing was imported", as_json_output, exc.problems
            )
        finally:
            if bar is not None:
                bar.close()
        if as_json_output:
            self.stdout.write(json.dumps(result.as_dict(), sort_keys=True))
            return
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        self.stdout.write(f"Imported {path.name}:")
        header = f"  {'':<20}" + "".join(f"{kind:>12}" for kind in KINDS)
        self.stdout.write(header)
        for entity in ENTITIES:
            counts = result.counts[entity]
            self.stdout.write(f"  {entity:<20}" + "".join(f"{counts[kind]:>12}" for kind in KINDS))
        if not result.changed:
            self.stdout.write("Nothing changed: the database already matched this bundle.")

    def _fail(self, message: str, as_json_output: bool, problems: list[Any]) -> None:
        if as_json_output:
            self.stdout.write(json.dumps({"error": message, "problems": as_json(problems)}, sort_keys=True))
        self.stderr.write(f"error: {message}")
        sys.exit(2)
