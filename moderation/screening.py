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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import ahocorasick  # type: ignore[import-not-found]  # a C extension without type information

from moderation import intent, learned, lexicon, profanity
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
    severe: tuple[str, ...] = ()  # phrases that raise the action to hold and the severity by one
    answered: bool = False  # its author is answered at once with the school's sources of help

    def graver(self) -> Category:
        """The category as a severe phrase or rule finds it: held, and one step more serious."""
        action = self.action if ORDER[self.action] >= ORDER[Action.HOLD] else Action.HOLD
        return replace(self, action=action, severity=min(4, self.severity + 1))


PHONE = re.compile(r"(?<![\w+])(?:\+?\d[\s().-]{0,2}){9,14}\d(?!\w)")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
HANDLE = re.compile(r"(?<![\w@])@[A-Za-z0-9_.]{3,30}\b")
POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b", re.IGNORECASE)
STREET = re.compile(
    r"\b\d{1,4}[a-z]? [A-Za-z][A-Za-z ]{1,30} (?:street|st|road|rd|avenue|ave|lane|ln|close|drive|way|crescent)\b",
    re.IGNORECASE,
)

HELD = "Held for a teacher to check."
ANSWER = "A trusted adult at school will check in with you soon. You have not done anything wrong by saying this."


def _category(key: str, label: str, severity: int, action: Action, **more: Any) -> Category:
    """A category with its phrases from its lexicon file (`moderation/data/lexicon/<key>.txt`)."""
    phrases, severe = lexicon.load(key)
    return Category(key, label, severity, action, phrases=phrases, severe=severe, **more)


CATEGORIES: dict[str, Category] = {
    category.key: category
    for category in [
        # A cry for help is withheld from the class, goes to the safeguarding lead at once (severity 4)
        # and its author is answered: never rejected, never silently dropped.
        _category(
            "self_harm", "Self-harm or suicide risk", 4, Action.HOLD, reason=ANSWER, never_reject=True, answered=True
        ),
        _category(
            "abuse_disclosure",
            "A child telling of abuse or exploitation",
            4,
            Action.HOLD,
            reason=ANSWER,
            never_reject=True,
            answered=True,
        ),
        _category("grooming", "Grooming or boundary-crossing", 3, Action.HOLD, reason=HELD),
        _category("bullying", "Bullying or harassment", 2, Action.FLAG, reason=HELD),
        _category("violence", "Threats of violence or weapons", 3, Action.HOLD, reason=HELD),
        _category("sexual", "Sexual content, image requests or sextortion", 3, Action.HOLD, reason=HELD),
        _category("extremism", "Extremism or radicalisation", 3, Action.HOLD, reason=HELD),
        _category("hate", "Hate", 3, Action.HOLD, reason=HELD),
        _category(
            "off_platform",
            "Moving the conversation off the platform, or keeping it secret",
            3,
            Action.HOLD,
            patterns=(PHONE, EMAIL, HANDLE),
            reason="Held for a teacher to check: keep conversations here, where everyone can see them.",
        ),
        _category(
            "personal_information",
            "Sharing personal information",
            2,
            Action.HOLD,
            patterns=(POSTCODE, STREET),
            reason="Held for a teacher to check: keep addresses and passwords private.",
        ),
        # Scored by alt-profanity-check's model (moderation.profanity), on the folded text so that
        # disguised swearing scores as swearing. Recorded, not acted on, by default: the model reads
        # words without context ("Moby Dick", "stupid question" score above 0.9), so a school chooses
        # whether it flags or holds.
        Category("profanity", "Profanity", severity=1, action=Action.ALLOW, threshold=0.9),
    ]
}


@dataclass(frozen=True)
class Match:
    category: str
    start: int  # in the original text (-1: found by the grammar, or in context)
    end: int
    text: str
    in_context: bool = False  # found in this message read with the author's messages just before it

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"category": self.category, "start": self.start, "end": self.end, "text": self.text}
        if self.in_context:
            shown["in_context"] = True
        return shown


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
            "matches": [match.as_dict() for match in self.matches],
            "scores": dict(self.scores),
        }


@dataclass
class Screen:
    """A set of categories (the built-in ones, or a school's version of them) and their compiled phrase
    lists: one automaton for words, one for words spelt out letter by letter; and the intent grammar."""

    categories: dict[str, Category] = field(default_factory=dict)
    words: Any = field(default_factory=ahocorasick.Automaton)
    squashed: Any = field(default_factory=ahocorasick.Automaton)
    learned: bool = True  # whether the learned model is read too (`moderation.learned`)

    @classmethod
    def build(cls, categories: dict[str, Category]) -> Screen:
        screen = cls(categories=categories)
        for key, category in categories.items():
            for severe, phrases in ((False, category.phrases), (True, category.severe)):
                for phrase in phrases:
                    folded = fold_phrase(phrase)
                    if not folded:
                        continue
                    squashed = folded.replace(" ", "")
                    # A phrase in two lists counts as severe: `add_word` keeps the last value given.
                    if severe or (f" {folded} " not in screen.words):
                        screen.words.add_word(f" {folded} ", (key, len(folded) + 2, severe))
                    if severe or squashed not in screen.squashed:
                        screen.squashed.add_word(squashed, (key, len(squashed), severe))
        for automaton in (screen.words, screen.squashed):
            if len(automaton):
                automaton.make_automaton()
        return screen

    def find(self, text: str, spelt: tuple[tuple[int, int], ...]) -> list[tuple[str, int, int, bool]]:
        """(category, start, end, severe) in folded text (see `moderation.normalize`)."""
        found: list[tuple[str, int, int, bool]] = []
        if len(self.words) and text:
            padded = f" {text} "
            for end, (key, length, severe) in self.words.iter(padded):
                # In the padded text the phrase spans end-length+1..end; its letters sit one further in,
                # and the padding shifts everything by one.
                found.append((key, end - length + 1, end - 1, severe))
        if len(self.squashed):
            for start, stop in spelt:
                for end, (key, length, severe) in self.squashed.iter(text[start:stop]):
                    found.append((key, start + end - length + 1, start + end + 1, severe))
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


CONTEXT = 3  # the author's messages just before this one that screening reads with it


def screen_text(text: str, screen: Screen | None = None, *, spans: bool = True, context: Sequence[str] = ()) -> Result:
    """What screening finds in `text`, and the action its most serious category asks for.

    With `spans`, each phrase found is located in the original text (a slower, letter-by-letter
    fold, done only when something was found); without, a phrase match gives the folded phrase and
    no position (start and end -1), which is all the send path needs. What the intent grammar finds
    has no position: its match gives the folded words.

    `context` is the same author's messages just before this one, oldest first: what they say
    together counts too ("i want to" / "not wake up"), marked as found in context.
    """
    screen = screen or default_screen()
    categories = screen.categories
    matches = _pattern_matches(text, categories)
    folded_text, spelt = quick_fold(text)
    found = screen.find(folded_text, spelt)
    severe = {key for key, _, _, grave in found if grave}
    if found and spans:
        folded = fold(text)  # gives the same text as quick_fold, with where each letter came from
        for key, start, end, _ in screen.find(folded.text, folded.spelt):
            first, last = folded.span(start, end)
            matches.append(Match(key, first, last, text[first:last]))
    elif found:
        matches.extend(Match(key, -1, -1, folded_text[start:end]) for key, start, end, _ in found)
    for finding in intent.find(text):
        if finding.category in categories:
            matches.append(Match(finding.category, -1, -1, finding.text))
            if finding.severe:
                severe.add(finding.category)
    if context:
        matches.extend(_in_context(text, list(context[-CONTEXT:]), screen, severe))
    discussing = _discussing(folded_text)
    if discussing:
        matches = [m for m in matches if m.category in FIRST_PERSON or (m.start >= 0 and _pattern(m, categories))]
    elif screen.learned:  # what the lists and the grammar did not name (they explain themselves better)
        named = {m.category for m in matches}
        found_by_model = _learned(text, list(context[-CONTEXT:]), categories, folded_text)
        matches.extend(m for m in found_by_model if m.category not in named)
    scores = _scores(folded_text, categories)
    if not matches and not scores:
        return Result(Action.ALLOW, 0, (), ())
    matches = sorted(set(matches), key=lambda m: (m.start, m.end, m.category, m.text))
    found_in = tuple(
        categories[key].graver() if key in severe else categories[key]
        for key in dict.fromkeys([*(m.category for m in matches), *dict(scores)])
    )
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


# Categories whose phrases and rules speak in the first person ("i want to die", "my dad hits me"): a
# message that discusses a lesson or a book still counts for them.
FIRST_PERSON = {"self_harm", "abuse_disclosure"}


@cache
def _discussion_markers() -> Any:
    automaton = ahocorasick.Automaton()
    for phrase in lexicon.load("discussion")[0]:
        folded = fold_phrase(phrase)
        if folded:
            automaton.add_word(f" {folded} ", folded)
    automaton.make_automaton()
    return automaton


def _discussing(folded_text: str) -> bool:
    """Does the message frame itself as discussing a subject (a lesson, a book, the news)? See
    `data/lexicon/discussion.txt`."""
    markers = _discussion_markers()
    return len(markers) > 0 and next(markers.iter(f" {folded_text} "), None) is not None


def _pattern(match: Match, categories: dict[str, Category]) -> bool:
    """Was `match` found by a contact pattern (a phone number, an address), which a lesson does not excuse?"""
    return any(pattern.fullmatch(match.text) for pattern in categories[match.category].patterns)


def _learned(text: str, context: list[str], categories: dict[str, Category], folded_text: str) -> list[Match]:
    """What the learned model finds in this message, read with the author's last messages: each finding
    names the words that weighed most (`moderation.learned`)."""
    model = learned.model()
    if model is None:
        return []
    found = model.find(" ".join([*context, text])) if context else model.find(text, folded_text)
    if found and context:  # only what this message adds: what the earlier ones said was screened with them
        before = {category for category, _, _ in model.find(" ".join(context))}
        found = [finding for finding in found if finding[0] not in before]
    return [
        Match(category, -1, -1, "model: " + ", ".join(words), in_context=bool(context))
        for category, _, words in found
        if category in categories
    ]


def _words(text: str, screen: Screen, severe: set[str]) -> set[tuple[str, str]]:
    """(category, words) that phrases and the grammar find in `text`; severe categories go in `severe`."""
    folded_text, spelt = quick_fold(text)
    found: set[tuple[str, str]] = set()
    for key, start, end, grave in screen.find(folded_text, spelt):
        found.add((key, folded_text[start:end]))
        if grave:
            severe.add(key)
    for finding in intent.find(text):
        if finding.category in screen.categories:
            found.add((finding.category, finding.text))
            if finding.severe:
                severe.add(finding.category)
    return found


def _in_context(text: str, context: list[str], screen: Screen, severe: set[str]) -> list[Match]:
    """What the author's last messages and this one say together and not apart: the messages joined
    into one (a sentence may run on from one message into the next), less what the earlier messages
    say without this one (screened when they were sent)."""
    earlier = _words(" ".join(context), screen, set())
    grave: set[str] = set()
    together = _words(" ".join([*context, text]), screen, grave)
    new = together - earlier - _words(text, screen, set())
    severe |= {key for key, _ in new} & grave
    return [Match(key, -1, -1, words, in_context=True) for key, words in sorted(new)]


def _scores(folded_text: str, categories: dict[str, Category]) -> tuple[tuple[str, float], ...]:
    """The scored categories whose score reaches their threshold."""
    scored = [(key, category.threshold) for key, category in categories.items() if category.threshold is not None]
    if not scored or not folded_text.strip():
        return ()
    value = profanity.score(folded_text)
    return tuple((key, round(value, 3)) for key, threshold in scored if value >= threshold)
