"""Screening: which worrying things a message says, where, and what to do before it is saved.

Each category has a severity (1 low to 4 highest) and a default action: allow, flag (deliver and
open a case), hold (deliver only to the author and the room's moderators until a moderator decides)
or reject (not posted; the sender is told why). Phrases are matched on folded text
(`moderation.normalize`) at word boundaries, so "Scunthorpe" is not a match for what it contains;
words spelt out letter by letter are also searched inside. Patterns for contact details run on the
original text.

This module knows no database: `moderation.rules` builds each school's screen from its rules and
provides the screener that messaging's pipeline calls (COMMONROOM_SCREENERS).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import ahocorasick  # type: ignore[import-not-found]  # a C extension without type information

from moderation import profanity
from moderation.normalize import fold, fold_phrase, quick_fold


class Action(enum.StrEnum):
    ALLOW = "allow"
    FLAG = "flag"
    HOLD = "hold"
    REJECT = "reject"


ORDER = {Action.ALLOW: 0, Action.FLAG: 1, Action.HOLD: 2, Action.REJECT: 3}


@dataclass(frozen=True)
class Category:
    key: str
    label: str
    severity: int
    action: Action
    phrases: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    reason: str = ""  # what the sender is told when a message is held or rejected for it
    never_reject: bool = False  # a cry for help is delivered or held, never silently dropped
    threshold: float | None = None  # for a scored category: the profanity score (0 to 1) from which it counts


PHONE = re.compile(r"(?<![\w+])(?:\+?\d[\s().-]{0,2}){9,14}\d(?!\w)")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
HANDLE = re.compile(r"(?<![\w@])@[A-Za-z0-9_.]{3,30}\b")
POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b", re.IGNORECASE)
STREET = re.compile(
    r"\b\d{1,4}[a-z]? [A-Za-z][A-Za-z ]{1,30} (?:street|st|road|rd|avenue|ave|lane|ln|close|drive|way|crescent)\b",
    re.IGNORECASE,
)

CATEGORIES: dict[str, Category] = {
    category.key: category
    for category in [
        Category(
            "off_platform",
            "Moving the conversation off the platform, or keeping it secret",
            severity=3,
            action=Action.HOLD,
            phrases=(
                "snapchat", "snap me", "add me on snap", "whatsapp", "instagram", "insta", "tiktok", "telegram",
                "discord", "kik", "wickr", "facebook", "messenger",
                "add me", "dm me", "direct message me", "message me privately", "private message", "text me",
                "call me", "ring me", "my number", "your number", "meet up", "meet me", "come over",
                "dont tell anyone", "don't tell anyone", "do not tell anyone", "dont tell your parents",
                "don't tell your mum", "don't tell your dad", "our secret", "our little secret", "keep it secret",
                "keep this between us", "just between us", "delete this", "delete the messages", "delete your messages",
            ),
            patterns=(PHONE, EMAIL, HANDLE),
            reason="Held for a teacher to check: keep conversations here, where everyone can see them.",
        ),
        Category(
            "self_harm",
            "Self-harm or suicide risk",
            severity=4,
            action=Action.FLAG,
            phrases=(
                "kill myself", "killing myself", "want to die", "wanna die", "end my life", "end it all",
                "suicide", "suicidal", "self harm", "self-harm", "harm myself", "hurt myself", "cut myself",
                "cutting myself", "no reason to live", "better off dead", "better off without me",
                "take my own life", "dont want to be alive", "don't want to be alive", "overdose",
            ),
            reason="A member of staff will check in with you.",
            never_reject=True,
        ),
        Category(
            "bullying",
            "Bullying or harassment",
            severity=2,
            action=Action.FLAG,
            phrases=(
                "kill yourself", "kys", "go die", "nobody likes you", "no one likes you", "everyone hates you",
                "you are worthless", "you're worthless", "youre worthless", "you are pathetic", "loser",
                "freak", "you are ugly", "you're ugly", "youre ugly", "shut up fatty", "fatso",
            ),
        ),
        Category(
            "sexual",
            "Sexual content",
            severity=3,
            action=Action.HOLD,
            phrases=("nudes", "send nudes", "send pics", "naked", "porn", "sexting", "sexy pics", "horny"),
            reason="Held for a teacher to check.",
        ),
        Category(
            "hate",
            "Hate",
            severity=3,
            action=Action.HOLD,
            phrases=("go back to your country", "go back to where you came from", "white power", "heil hitler"),
            reason="Held for a teacher to check.",
        ),
        Category(
            "personal_information",
            "Sharing personal information",
            severity=2,
            action=Action.HOLD,
            phrases=(
                "my address is", "i live at", "my password is", "my pin is", "my passcode is", "my home address",
            ),
            patterns=(POSTCODE, STREET),
            reason="Held for a teacher to check: keep addresses and passwords private.",
        ),
        # Scored by alt-profanity-check's model (moderation.profanity), on the folded text so that
        # disguised swearing scores as swearing. Recorded, not acted on, by default: the model reads
        # words without context ("Moby Dick", "stupid question" score above 0.9), so a school chooses
        # whether it flags or holds.
        Category("profanity", "Profanity", severity=1, action=Action.ALLOW, threshold=0.9),
    ]
}  # fmt: skip


@dataclass(frozen=True)
class Match:
    category: str
    start: int  # in the original text
    end: int
    text: str


@dataclass(frozen=True)
class Result:
    action: Action
    severity: int
    categories: tuple[str, ...]  # the keys of the categories found, in the order they were found
    matches: tuple[Match, ...]
    reason: str = ""
    found: tuple[Category, ...] = ()  # those categories, as the screen that found them defines them
    scores: tuple[tuple[str, float], ...] = ()  # scored categories at or over their threshold, with the score

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.action.value,
            "severity": self.severity,
            "categories": [
                {"category": category.key, "severity": category.severity, "label": category.label}
                for category in self.found
            ],
            "matches": [match.__dict__ for match in self.matches],
            "scores": dict(self.scores),
        }


@dataclass
class Screen:
    """A set of categories (the built-in ones, or a school's version of them) and their compiled phrase
    lists: one automaton for words, one for words spelt out letter by letter."""

    categories: dict[str, Category] = field(default_factory=dict)
    words: Any = field(default_factory=ahocorasick.Automaton)
    squashed: Any = field(default_factory=ahocorasick.Automaton)

    @classmethod
    def build(cls, categories: dict[str, Category]) -> Screen:
        screen = cls(categories=categories)
        for key, category in categories.items():
            for phrase in category.phrases:
                folded = fold_phrase(phrase)
                if not folded:
                    continue
                screen.words.add_word(f" {folded} ", (key, len(folded) + 2))
                screen.squashed.add_word(folded.replace(" ", ""), (key, len(folded.replace(" ", ""))))
        for automaton in (screen.words, screen.squashed):
            if len(automaton):
                automaton.make_automaton()
        return screen

    def find(self, text: str, spelt: tuple[tuple[int, int], ...]) -> list[tuple[str, int, int]]:
        """(category, start, end) in folded text (see `moderation.normalize`)."""
        found: list[tuple[str, int, int]] = []
        if len(self.words) and text:
            padded = f" {text} "
            for end, (key, length) in self.words.iter(padded):
                # In the padded text the phrase spans end-length+1..end; its letters sit one further in,
                # and the padding shifts everything by one.
                found.append((key, end - length + 1, end - 1))
        if len(self.squashed):
            for start, stop in spelt:
                for end, (key, length) in self.squashed.iter(text[start:stop]):
                    found.append((key, start + end - length + 1, start + end + 1))
        return found


@cache
def default_screen() -> Screen:
    return Screen.build(CATEGORIES)


# Contact details and addresses need a digit or an "@": each pattern runs only in windows around what
# it cannot match without (its trigger), so leetspeak digits ("k1ll") do not send every pattern over
# the whole of a long message. A trigger must match wherever its pattern does: every match of a pattern
# holds a match of its trigger, starting at most BEFORE characters into it and ending at most AFTER
# characters before its end, or the windows miss what the whole text gives (tests/test_screening.py
# holds the two to the same answer).
TRIGGERS: dict[re.Pattern[str], re.Pattern[str]] = {
    EMAIL: re.compile(r"@[\w-]+\."),  # an "@" before a domain: leetspeak's "c@t" is not one
    HANDLE: re.compile(r"(?<![\w@])@[\w.]"),  # an "@" that starts a word or a dotted name ("@.x" is a handle)
    # Six digits close together, at least, with what a phone number allows between two digits: up to
    # two separators, then a "+" ("1-+2").
    PHONE: re.compile(r"\d(?:[\s().+-]{0,3}\d){5}"),
    POSTCODE: re.compile(r"\d.{0,2}\d"),  # "SW1A 1AA": two digits within a few characters
    STREET: re.compile(r"(?<!\w)\d"),  # a house number starts a word
}
AT_TRIGGERS = {TRIGGERS[EMAIL], TRIGGERS[HANDLE]}  # the others need a digit
BEFORE, AFTER = 64, 96  # how far around a trigger a pattern's match can reach
# An email address has no bound on its length, so it can reach further than BEFORE and AFTER: its
# windows widen to the whole run of the characters an address is made of, and so start and end where
# no address can go on.
RUNS: dict[re.Pattern[str], re.Pattern[str]] = {EMAIL: re.compile(r"[\w.+@-]*")}


def _windows(text: str, trigger: re.Pattern[str], run: re.Pattern[str] | None = None) -> list[list[int]]:
    windows: list[list[int]] = []
    for found in trigger.finditer(text):
        start, end = max(0, found.start() - BEFORE), found.end() + AFTER
        if windows and start <= windows[-1][1]:
            if end > windows[-1][1]:
                windows[-1][1] = _run_end(run, text, end) if run else end
            continue
        if run:
            # Back to where the run starts, though no further than the window before (the text read
            # backwards, so that the run's own pattern finds it); then on to where the run ends.
            floor = windows[-1][1] if windows else 0
            start -= _run_end(run, text[floor:start][::-1], 0)
            end = _run_end(run, text, end)
            if windows and start <= windows[-1][1]:
                windows[-1][1] = end
                continue
        windows.append([start, end])
    return windows


def _run_end(run: re.Pattern[str], text: str, position: int) -> int:
    """Where the run of characters that `run` matches, from `position` in `text`, ends."""
    found = run.match(text, position)
    return found.end() if found else min(position, len(text))


DIGIT = re.compile(r"\d")


def _pattern_matches(text: str, categories: dict[str, Category]) -> list[Match]:
    matches: list[Match] = []
    has_at, has_digit = "@" in text, DIGIT.search(text) is not None
    windows: dict[re.Pattern[str], list[list[int]]] = {}
    for key, category in categories.items():
        for pattern in category.patterns:
            trigger = TRIGGERS.get(pattern)
            if trigger is None:  # nothing known that it cannot match without: the whole text
                matches.extend(Match(key, m.start(), m.end(), m.group()) for m in pattern.finditer(text))
                continue
            if not (has_at if trigger in AT_TRIGGERS else has_digit):
                continue  # the common case: no digit or no "@", so no trigger
            if trigger not in windows:
                windows[trigger] = _windows(text, trigger, RUNS.get(pattern))
            for start, end in windows[trigger]:
                matches.extend(Match(key, m.start(), m.end(), m.group()) for m in pattern.finditer(text, start, end))
    return matches


def screen_text(text: str, screen: Screen | None = None, *, spans: bool = True) -> Result:
    """What screening finds in `text`, and the action its most serious category asks for.

    With `spans`, each phrase found is located in the original text (a slower, letter-by-letter
    fold, done only when something was found); without, a phrase match gives the folded phrase and
    no position (start and end -1), which is all the send path needs.
    """
    screen = screen or default_screen()
    categories = screen.categories
    matches = _pattern_matches(text, categories)
    folded_text, spelt = quick_fold(text)
    found = screen.find(folded_text, spelt)
    if found and spans:
        folded = fold(text)  # gives the same text as quick_fold, with where each letter came from
        for key, start, end in screen.find(folded.text, folded.spelt):
            first, last = folded.span(start, end)
            matches.append(Match(key, first, last, text[first:last]))
    elif found:
        matches.extend(Match(key, -1, -1, folded_text[start:end]) for key, start, end in found)
    scores = _scores(folded_text, categories)
    if not matches and not scores:
        return Result(Action.ALLOW, 0, (), ())
    matches = sorted(set(matches), key=lambda m: (m.start, m.end, m.category))
    found_in = tuple(categories[key] for key in dict.fromkeys([*(m.category for m in matches), *dict(scores)]))
    worst = max(found_in, key=lambda c: (ORDER[c.action], c.severity))
    action = max((c.action for c in found_in), key=ORDER.__getitem__)
    if action == Action.REJECT and any(c.never_reject for c in found_in):
        action = Action.HOLD
    return Result(
        action=action,
        severity=max(c.severity for c in found_in),
        categories=tuple(c.key for c in found_in),
        matches=tuple(matches),
        found=found_in,
        reason=worst.reason,
        scores=scores,
    )


def _scores(folded_text: str, categories: dict[str, Category]) -> tuple[tuple[str, float], ...]:
    """The scored categories whose score reaches their threshold."""
    scored = [(key, category.threshold) for key, category in categories.items() if category.threshold is not None]
    if not scored or not folded_text.strip():
        return ()
    value = profanity.score(folded_text)
    return tuple((key, round(value, 3)) for key, threshold in scored if value >= threshold)
