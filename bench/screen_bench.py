"""Benchmark: screening one message, as the send path does before saving it.

Times `moderation.screening.screen_text` as the send path calls it (without locating spans) on
4,000-character messages (the longest a message can be)
of three kinds: ordinary classroom text, text with a match near the end, and text full of the
disguises folding undoes (accents, look-alike letters, spelt-out words). Prints the median, the 99th
percentile and the maximum per kind, and writes bench/results/screen.json.

    .venv/bin/python bench/screen_bench.py               # 20,000 messages of each kind
    .venv/bin/python bench/screen_bench.py --count 2000  # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
LENGTH = 4000

WORDS = [
    "the",
    "homework",
    "for",
    "tomorrow",
    "is",
    "page",
    "twelve",
    "and",
    "thirteen",
    "please",
    "remember",
    "your",
    "calculators",
    "we",
    "will",
    "revise",
    "chapter",
    "three",
    "before",
    "the",
    "quiz",
    "on",
    "friday",
    "does",
    "anyone",
    "know",
    "when",
    "the",
    "trip",
    "leaves",
    "miss",
    "said",
    "the",
    "coach",
    "goes",
    "at",
    "nine",
    "thanks",
    "for",
    "the",
    "notes",
    "I",
    "missed",
    "the",
    "start",
    "of",
    "the",
    "lesson",
    "can",
    "we",
    "use",
    "a",
    "pencil",
]


def ordinary(rng: random.Random) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < LENGTH:
        words.append(rng.choice(WORDS))
    return " ".join(words)[:LENGTH]


def with_match(rng: random.Random) -> str:
    tail = " add me on snapchat"
    return ordinary(rng)[: LENGTH - len(tail)] + tail


def disguised(rng: random.Random) -> str:
    pieces = ["c\u0430f\u00e9", "s n a p", "h\u200beeello", "\uff53\uff4e\uff41\uff50", "k1ll", "ok!!!"]
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < LENGTH:
        words.append(rng.choice(pieces + WORDS))
    return " ".join(words)[:LENGTH]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "commonroom.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only")
    import django

    django.setup()
    from moderation.screening import screen_text

    rng = random.Random(7)
    results = {}
    screen_text("warm up the caches: add me on snapchat, i want to die")
    for name, make in (("ordinary", ordinary), ("with a match", with_match), ("disguised", disguised)):
        messages = [make(rng) for _ in range(200)]
        timings = []
        for n in range(args.count):
            text = messages[n % len(messages)]
            started = time.perf_counter()
            screen_text(text, spans=False)
            timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        results[name] = {
            "median_ms": round(statistics.median(timings), 3),
            "p99_ms": round(timings[int(len(timings) * 0.99) - 1], 3),
            "max_ms": round(timings[-1], 3),
        }
        print(
            f"{name:<14} median {results[name]['median_ms']:.3f} ms   p99 {results[name]['p99_ms']:.3f} ms   "
            f"max {results[name]['max_ms']:.3f} ms   ({args.count} messages of {LENGTH} characters)"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "count": args.count,
        "length": LENGTH,
        "results": results,
    }
    (RESULTS / "screen.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
