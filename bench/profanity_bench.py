"""Benchmark: the profanity score of one message, by the library's own call and by the fast path.

Times `moderation.profanity.score` (the fast path) and alt-profanity-check's `predict_prob([text])` (what
the fast path reproduces) on four kinds of message: short chat (about 60 characters), and 4,000-character
messages (the longest a message can be) of ordinary classroom text, of as many different words of the
model's vocabulary as fit, and of text with accents, other scripts and emoji (which takes the fast path's
non-ASCII route). Also measures loading the model: its time, and the growth in the process's peak memory.
Prints the median, 95th and 99th percentiles and the maximum per kind and path, and writes
bench/results/profanity.json.

    .venv/bin/python bench/profanity_bench.py                # 20,000 fast and 2,000 library calls per kind
    .venv/bin/python bench/profanity_bench.py --count 2000   # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
LENGTH = 4000

SHORT = [
    "Can you help me with question 3 of the homework?",
    "does anyone know when the coach leaves for the trip tomorrow",
    "Miss said we need our calculators for the quiz on Friday!!",
    "thanks for the notes, I missed the start of the lesson today",
    "you are a stupid idiot and nobody likes you, just go away now",
    "what the hell is this, page 12 makes no sense at all honestly",
]
# Classroom talk, the words bench/screen_bench.py fills its messages with.
LINES = [
    "the homework for tomorrow is page twelve and thirteen please remember your calculators",
    "we will revise chapter three before the quiz on friday does anyone know when the trip leaves",
    "miss said the coach goes at nine thanks for the notes I missed the start of the lesson can we use a pencil",
]
WORDS = [word for line in LINES for word in line.split()]
# Accented, Cyrillic, emoji, zero-width and full-width: the kinds of character folding undoes.
UNICODE = [
    "caf\u00e9",
    "na\u00efve",
    "\u0441\u0430t",
    "\u00fcber",
    "\U0001f600",
    "\u200bhi",
    "\uff53\uff4e\uff41\uff50",
    "ok!!!",
]


def fill(rng: random.Random, pool: list[str]) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < LENGTH:
        words.append(rng.choice(pool))
    return " ".join(words)[:LENGTH]


def percentiles(timings: list[float]) -> dict[str, float]:
    timings = sorted(timings)

    def at(q: float) -> float:
        return round(timings[max(int(len(timings) * q) - 1, 0)], 4)

    return {"median_ms": at(0.5), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": round(timings[-1], 4)}


def timed(call: Callable[[str], float], messages: list[str], count: int) -> dict[str, float]:
    call(messages[0])
    timings = []
    for n in range(count):
        text = messages[n % len(messages)]
        started = time.perf_counter()
        call(text)
        timings.append((time.perf_counter() - started) * 1000)
    return percentiles(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000, help="fast-path calls per kind")
    parser.add_argument("--library-count", type=int, default=2_000, help="library calls per kind (~4 ms each)")
    args = parser.parse_args()
    from moderation import profanity

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    profanity.load()
    load_s = time.perf_counter() - started
    grew_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024  # KiB on Linux
    print(f"model load {load_s:.2f} s, peak memory +{grew_mib:.0f} MiB, fast path: {profanity.uses_fast_path()}")

    from profanity_check import profanity_check as library

    rng = random.Random(7)
    vocabulary = sorted(library.vectorizer.vocabulary_)
    kinds: dict[str, list[str]] = {
        "short": SHORT,
        "ordinary 4000": [fill(rng, WORDS) for _ in range(200)],
        "varied 4000": [fill(rng, vocabulary) for _ in range(200)],
        "non-ascii 4000": [fill(rng, WORDS + UNICODE) for _ in range(200)],
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, messages in kinds.items():
        results[name] = {
            "fast": timed(profanity.score, messages, args.count),
            "library": timed(profanity.library_score, messages, args.library_count),
        }
        length = round(sum(map(len, messages)) / len(messages))
        for path, figures in results[name].items():
            print(
                f"{name:<15} {path:<8} median {figures['median_ms']:.4f} ms   p95 {figures['p95_ms']:.4f} ms   "
                f"p99 {figures['p99_ms']:.4f} ms   max {figures['max_ms']:.4f} ms   (~{length} characters)"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "count": {"fast": args.count, "library": args.library_count},
        "length": LENGTH,
        "load": {"seconds": round(load_s, 3), "peak_memory_growth_mib": round(grew_mib, 1)},
        "fast_path": profanity.uses_fast_path(),
        "results": results,
    }
    (RESULTS / "profanity.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
