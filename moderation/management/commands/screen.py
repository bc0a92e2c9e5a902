"""`manage.py screen [--school ID]`: screen messages, one per line of standard input, one JSON line out each.

`manage.py screen --evaluate PATH [PATH ...]`: measure screening on a labelled corpus (CSV files, or
folders of them; see `moderation.evaluation`): recall and precision per category, false alarms per
1,000 ordinary messages, latency per message. `--json` prints the report as JSON, `--misses` lists what
was missed and what raised a false alarm."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_scopes import scopes_disabled

from classes.models import School
from moderation import evaluation, learned
from moderation.rules import school_screen, screen_for
from moderation.screening import screen_text

# The development part of the labelled corpus: the held-back part is only ever evaluated on.
TRAINING_CORPUS = Path(__file__).resolve().parents[3] / "tests" / "data" / "screening" / "dev"


class Command(BaseCommand):
    help = (
        "Screen messages read one per line from standard input; print one JSON object per line: the verdict, "
        "the categories matched with their severity, and the matched spans (start and end in the line). "
        "With --school, the school's own actions, severities and phrases apply."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--school", type=int, help="The id of the school whose screening rules to use.")
        parser.add_argument(
            "--evaluate", nargs="+", type=Path, metavar="PATH", help="Labelled corpus files or folders."
        )
        parser.add_argument("--json", action="store_true", help="With --evaluate: the report as JSON.")
        parser.add_argument("--misses", action="store_true", help="With --evaluate: list misses and false alarms.")
        parser.add_argument(
            "--train",
            nargs="*",
            type=Path,
            metavar="PATH",
            help="Retrain the learned model on a labelled corpus (default: the development corpus) and write "
            "moderation/data/model.npz.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        school_id = options.get("school")
        if school_id is not None:
            with scopes_disabled():
                if not School.objects.filter(pk=school_id).exists():
                    raise CommandError(f"There is no school with id {school_id}.")
        if options.get("train") is not None:
            self._train(options["train"] or [TRAINING_CORPUS])
            return
        if options.get("evaluate"):
            self._evaluate(options["evaluate"], school_id, as_json=options["json"], misses=options["misses"])
            return
        for line in sys.stdin:
            text = line.rstrip("\r\n")
            self.stdout.write(json.dumps(screen_for(text, school_id).as_dict(), ensure_ascii=False))

    def _evaluate(self, paths: list[Path], school_id: int | None, *, as_json: bool, misses: bool) -> None:
        missing = [str(path) for path in paths if not path.exists()]
        if missing:
            raise CommandError(f"No such file or folder: {', '.join(missing)}")
        samples = evaluation.read_corpus(paths)
        if not samples:
            raise CommandError("The corpus has no messages.")
        screen = school_screen(school_id)
        report = evaluation.evaluate(
            samples, lambda sample: screen_text(sample.text, screen, spans=False, context=sample.context)
        )
        self.stdout.write(json.dumps(report.as_dict(), indent=2) if as_json else evaluation.table(report))
        if misses:
            for sample in report.missed:
                self.stdout.write(f"missed {sample.category} {sample.source}: {sample.text}")
            for sample, result in report.raised:
                self.stdout.write(f"false alarm {','.join(result.categories)} {sample.source}: {sample.text}")

    def _train(self, paths: list[Path]) -> None:
        samples = evaluation.read_corpus(paths)
        if not samples:
            raise CommandError("The corpus has no messages.")
        texts = [" ".join([*sample.context, sample.text]) for sample in samples]
        labels = [sample.category if sample.harmful else learned.ORDINARY for sample in samples]
        target = Path(str(resources.files("moderation").joinpath(learned.MODEL_FILE)))
        chosen = learned.train(texts, labels, target)
        self.stdout.write(json.dumps({"model": str(target), "messages": len(texts), **chosen}))
