"""The phrase lists screening looks for: data files a school can read and extend (`data/lexicon/`).

One file per category, one phrase per line, written as people write it once: folding
(`moderation.normalize`) makes "k1ll", "KILL", "kiiill" and "don't"/"dont" the same on both sides. A
line starting with "! " is a severe phrase: it raises its category's action to hold and its severity by
one ("kys" is bullying, and worse than "loser"). Lines starting with "#" are comments.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load(category: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The phrases and the severe phrases of a category (none if it has no file)."""
    path = resources.files("moderation").joinpath(f"data/lexicon/{category}.txt")
    if not path.is_file():
        return (), ()
    return parse(path.read_text("utf-8"))


def parse(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    phrases: list[str] = []
    severe: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!"):
            severe.append(line[1:].strip())
        else:
            phrases.append(line)
    return tuple(dict.fromkeys(phrases)), tuple(dict.fromkeys(severe))
