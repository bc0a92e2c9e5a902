"""Measuring screening on a labelled corpus: what it misses, and how many false alarms it raises.

A corpus is one or more CSV files with the columns `category`, `thread` and `text`: one message a row.
`category` is a screening category, `ordinary` (class chat with no concern) or `trap` (ordinary chat that
a naive screener would flag: "this homework is killing me"). Rows that share a `thread` are one author's
messages in a room, in order: only the last is labelled, the ones before it are `part`, and it is
screened with them as its context, as the send path screens a message with its author's recent ones.

A harmful message is caught when the verdict is not `allow`; for self-harm and abuse disclosures it must
also reach the safeguarding lead at once (severity 4). A false alarm is an ordinary or trap message whose
verdict is not `allow`.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moderation.screening import Action, Result, screen_text

ORDINARY = ("ordinary", "trap")
PART = "part"
TO_THE_LEAD = ("self_harm", "abuse_disclosure")  # caught only when they reach the lead at once


@dataclass(frozen=True)
class Sample:
    category: str
    text: str
    context: tuple[str, ...] = ()  # the same author's messages just before it (a thread)
    source: str = ""  # file:line

    @property
    def harmful(self) -> bool:
        return self.category not in ORDINARY


def read_corpus(paths: Iterable[Path]) -> list[Sample]:
    """The samples of these CSV files (or of every CSV file in these folders)."""
    samples: list[Sample] = []
    for path in paths:
        files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
        for file in files:
            samples.extend(_read_file(file))
    return samples


def _read_file(path: Path) -> Iterator[Sample]:
    threads: dict[str, list[str]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            category, thread, text = row["category"].strip(), (row.get("thread") or "").strip(), row["text"]
            if category == PART:
                threads[thread].append(text)
                continue
            context = tuple(threads.pop(thread, [])) if thread else ()
            yield Sample(category, text, context, f"{path.name}:{line}")


Screener = Callable[[Sample], Result]


def default_screener(sample: Sample) -> Result:
    return screen_text(sample.text, spans=False, context=sample.context)


@dataclass
class Report:
    caught: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)
    found: Counter[str] = field(default_factory=Counter)  # category found, any label
    found_right: Counter[str] = field(default_factory=Counter)  # category found on a message of that label
    false_alarms: Counter[str] = field(default_factory=Counter)  # by the category that raised them
    ordinary: Counter[str] = field(default_factory=Counter)  # ordinary and trap messages
    alarmed: Counter[str] = field(default_factory=Counter)  # ordinary and trap messages with an alarm
    missed: list[Sample] = field(default_factory=list)
    raised: list[tuple[Sample, Result]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def recall(self, category: str | None = None) -> float:
        if category is None:
            total = sum(self.total.values())
            return sum(self.caught.values()) / total if total else 1.0
        return self.caught[category] / self.total[category] if self.total[category] else 1.0

    def precision(self, category: str) -> float:
        return self.found_right[category] / self.found[category] if self.found[category] else 1.0

    def false_alarms_per_1000(self) -> float:
        total = sum(self.ordinary.values())
        return 1000 * sum(self.alarmed.values()) / total if total else 0.0

    def latency_ms(self, quantile: float) -> float:
        ordered = sorted(self.seconds)
        if not ordered:
            return 0.0
        return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    def as_dict(self) -> dict[str, Any]:
        return {
            "recall": round(self.recall(), 4),
            "false_alarms_per_1000": round(self.false_alarms_per_1000(), 2),
            "categories": {
                key: {
                    "caught": self.caught[key],
                    "total": self.total[key],
                    "recall": round(self.recall(key), 4),
                    "precision": round(self.precision(key), 4),
                }
                for key in sorted(self.total)
            },
            "ordinary": {key: {"messages": self.ordinary[key], "alarms": self.alarmed[key]} for key in ORDINARY},
            "latency_ms": {
                "p50": round(self.latency_ms(0.5), 3),
                "p99": round(self.latency_ms(0.99), 3),
                "mean": round(1000 * statistics.fmean(self.seconds), 3) if self.seconds else 0.0,
            },
        }


def is_caught(sample: Sample, result: Result) -> bool:
    if result.action == Action.ALLOW:
        return False
    return sample.category not in TO_THE_LEAD or result.severity >= 4


def evaluate(samples: Iterable[Sample], screener: Screener = default_screener) -> Report:
    report = Report()
    for sample in samples:
        start = time.perf_counter()
        result = screener(sample)
        report.seconds.append(time.perf_counter() - start)
        alarm = result.action != Action.ALLOW
        for key in result.categories:
            if result.action != Action.ALLOW:
                report.found[key] += 1
                report.found_right[key] += key == sample.category
        if sample.harmful:
            report.total[sample.category] += 1
            if is_caught(sample, result):
                report.caught[sample.category] += 1
            else:
                report.missed.append(sample)
        else:
            report.ordinary[sample.category] += 1
            if alarm:
                report.alarmed[sample.category] += 1
                report.raised.append((sample, result))
                for key in result.categories:
                    report.false_alarms[key] += 1
    return report


def table(report: Report) -> str:
    """The report as a plain-text table, as `manage.py screen --evaluate` prints it."""
    lines = [f"{'category':<22} {'caught':>7} {'recall':>7} {'precision':>9}"]
    for key in sorted(report.total):
        lines.append(
            f"{key:<22} {report.caught[key]:>3}/{report.total[key]:<3} {report.recall(key):>7.3f} "
            f"{report.precision(key):>9.3f}"
        )
    lines.append(f"{'all harmful':<22} {sum(report.caught.values()):>3}/{sum(report.total.values()):<3} "
                 f"{report.recall():>7.3f}")  # fmt: skip
    for key in ORDINARY:
        lines.append(f"{key:<22} {report.alarmed[key]:>3}/{report.ordinary[key]:<3} false alarms")
    lines.append(f"false alarms per 1,000 ordinary messages: {report.false_alarms_per_1000():.1f}")
    lines.append(f"latency per message: p50 {report.latency_ms(0.5):.3f} ms, p99 {report.latency_ms(0.99):.3f} ms")
    return "\n".join(lines)
