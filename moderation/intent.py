"""The intent grammar: who says they will do what, with tense and negation (`data/grammar.txt`).

Phrase lists catch set words; people in distress say it in their own ("i'm honestly going to end it
tonight", "i don't want to be here anymore", "my stepdad hits me when mum is at work"). Each rule of
the grammar is a sequence of slots (lists of phrases), literal words and gaps of a few words, compiled
to one regular expression over folded text, clause by clause. A rule marked `-negated` does not count
when a negation stands among its words or just before them, so "i never said i wanted to die" and "i
don't want to die" are not disclosures, while "i don't want to be here anymore" is one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from moderation.normalize import fold_phrase, quick_fold

CLAUSE = re.compile(r"[.,!?;:\n\r]+|\bbut\b", re.IGNORECASE)
BEFORE = 2  # words before a match in which a negation still counts ("never said i wanted to ...")


@dataclass(frozen=True)
class Rule:
    category: str
    severe: bool
    pattern: re.Pattern[str]
    negated: bool  # does not count after a negation
    source: str  # the rule as written, for the staff member reviewing a finding


@dataclass(frozen=True)
class Finding:
    category: str
    severe: bool
    text: str  # the folded words that matched
    rule: str


def _alternatives(phrases: list[str]) -> str:
    folded = sorted({fold_phrase(p) for p in phrases if fold_phrase(p)}, key=len, reverse=True)
    return "(?:" + "|".join(re.escape(p) for p in folded) + ")"


def parse(text: str) -> tuple[list[Rule], re.Pattern[str]]:
    """The rules of a grammar file, and the pattern of its negations."""
    slots: dict[str, str] = {}
    negations: list[str] = []
    rules: list[Rule] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head, _, body = line.partition(":")
        head = head.strip()
        if head.startswith("@"):
            phrases = [p.strip() for p in body.split("|") if p.strip()]
            slots[head[1:]] = _alternatives(phrases)
            if head == "@negation":
                negations = phrases
            continue
        rules.append(_rule(head, body, slots, number))
    return rules, re.compile(rf"(?<![a-z]){_alternatives(negations)}(?![a-z])")


def _rule(head: str, body: str, slots: dict[str, str], number: int) -> Rule:
    if "|" in body:
        raise ValueError(f"grammar line {number}: a rule has no alternatives; make a slot of them")
    words = body.split()
    negated = words[-1] == "-negated"
    if negated:
        words = words[:-1]
    parts: list[str] = []  # regular expressions, each followed by the gap before the next
    gaps: list[int] = []
    literal: list[str] = []

    def close_literal() -> None:
        if literal:
            parts.append(re.escape(fold_phrase(" ".join(literal))))
            gaps.append(0)
            literal.clear()

    for word in words:
        if word.startswith("@"):
            close_literal()
            if word[1:] not in slots:
                raise ValueError(f"grammar line {number}: no slot {word}")
            parts.append(slots[word[1:]])
            gaps.append(0)
        elif word.startswith("~"):
            close_literal()
            if not gaps:
                raise ValueError(f"grammar line {number}: a gap cannot come first")
            gaps[-1] = int(word[1:])
        else:
            literal.append(word)
    close_literal()
    pattern = ""
    for index, (part, gap) in enumerate(zip(parts, gaps, strict=True)):
        last = index == len(parts) - 1
        pattern += f"(?P<last>{part})" if last else part
        if not last:
            pattern += f"(?: [a-z]+){{0,{gap}}} " if gap else " "
    category = head.rstrip("!")
    return Rule(category, head.endswith("!"), re.compile(rf"(?<![a-z]){pattern}(?![a-z])"), negated, body.strip())


@cache
def grammar() -> tuple[list[Rule], re.Pattern[str]]:
    return parse(resources.files("moderation").joinpath("data/grammar.txt").read_text("utf-8"))


def clauses(text: str) -> list[str]:
    """The folded clauses of a message."""
    return [folded for piece in CLAUSE.split(text) if (folded := quick_fold(piece)[0])]


def find(text: str, rules: list[Rule] | None = None, negation: re.Pattern[str] | None = None) -> list[Finding]:
    """What the grammar finds in `text` (a message, or a message with its context joined to it)."""
    if rules is None or negation is None:
        rules, negation = grammar()
    found: list[Finding] = []
    for clause in clauses(text):
        for rule in rules:
            for match in rule.pattern.finditer(clause):
                if rule.negated and _negated(clause, match, negation):
                    continue
                found.append(Finding(rule.category, rule.severe, match.group(), rule.source))
                break
    return found


def _negated(clause: str, match: re.Match[str], negation: re.Pattern[str]) -> bool:
    before = clause[: match.start()].split()[-BEFORE:]
    if any(negation.fullmatch(word) for word in before):
        return True
    return negation.search(clause, match.start(), match.start("last")) is not None
