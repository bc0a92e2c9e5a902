"""Text as screening sees it: the letters people meant, whatever disguise they wrote them in.

`fold` turns a message into lower-case Latin words separated by single spaces, undoing the usual
evasions: case, accents, look-alike letters from other scripts (a Cyrillic letter a for the Latin one), full-width and
mathematical letters, zero-width and soft-hyphen characters, leetspeak ("k1ll"), repeated letters
("heeelp") and words spelt out letter by letter ("s n a p"). Phrases to look for are folded the same
way, so both sides meet in the middle. Every letter of the folded text remembers where it came from
in the original, so a match can be shown to a person as the span they wrote.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

# Leetspeak: read as a letter when it touches a letter ("k1ll", "$nap"); "!" and "|" only inside a word,
# since a word may end with "!".
LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s", "!": "i", "|": "l"}
INSIDE_ONLY = {"!", "|"}
INVISIBLE = {"\u00ad", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u180e"}
# An apostrophe between two letters joins them: "don't" is "dont", "i'm" is "im", as people also write them.
APOSTROPHES = {"'", "\u2019", "\u2018", "\u02bc"}
SPELT_OUT = 3  # this many single letters in a row are read as one word ("s n a p")


@cache
def _look_alikes() -> dict[str, str]:
    """Characters that look like a Latin letter or digit, from the Unicode confusables data."""
    table = json.loads(resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8"))
    alike: dict[str, str] = {}
    for character, glyphs in table.items():
        if len(character) != 1 or character.isascii():
            continue
        for glyph in glyphs:
            target = glyph["c"]
            if len(target) == 1 and target.isascii() and target.isalnum():
                alike[character] = target.lower()
                break
    return alike


@cache
def _fold_character(character: str) -> str:
    """One character as plain lower-case letters (possibly none, possibly several: "ß" is "ss")."""
    if character in INVISIBLE:
        return ""
    text = unicodedata.normalize("NFKC", character)
    text = "".join(_look_alikes().get(c, c) for c in text)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return text.casefold()


@dataclass(frozen=True)
class Folded:
    """Folded text: `text` is words of a-z separated by single spaces; `origin[i]` is the index in the
    original of the character that gave `text[i]` (a space gets the index of the letter after it)."""

    text: str
    origin: tuple[int, ...]
    spelt: tuple[tuple[int, int], ...] = ()  # where in `text` words spelt out letter by letter stand

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of folded characters start..end (end exclusive, end > start)."""
        return self.origin[start], self.origin[end - 1] + 1


def fold(original: str) -> Folded:
    words: list[list[tuple[str, int]]] = [[]]
    for index, character in enumerate(original):
        if character in INVISIBLE or (character in APOSTROPHES and _joins(original, index)):
            continue  # inside a word: "s\u200bnap" is "snap", "don't" is "dont"
        meant = LEET[character] if character in LEET and _leet(original, index) else character
        for letter in _fold_character(meant):
            if "a" <= letter <= "z":
                word = words[-1]
                if not word or word[-1][0] != letter:  # "heeelp" is "help" (and "help" is "help")
                    word.append((letter, index))
            elif words[-1]:
                words.append([])
    words = [word for word in words if word]
    text: list[str] = []
    origin: list[int] = []
    spelt: list[tuple[int, int]] = []
    for word, was_spelt in _join_spelt_out(words):
        if text:
            text.append(" ")
            origin.append(word[0][1])
        if was_spelt:
            spelt.append((len(text), len(text) + len(word)))
        for letter, index in word:
            text.append(letter)
            origin.append(index)
    return Folded("".join(text), tuple(origin), tuple(spelt))


def _joins(original: str, index: int) -> bool:
    """Does the apostrophe at `index` stand between two letters?"""
    return 0 < index < len(original) - 1 and original[index - 1].isalpha() and original[index + 1].isalpha()


def _leet(original: str, index: int) -> bool:
    before = index > 0 and original[index - 1].isalpha()
    after = index + 1 < len(original) and original[index + 1].isalpha()
    return (before and after) if original[index] in INSIDE_ONLY else (before or after)


Word = list[tuple[str, int]]


def _join_spelt_out(words: list[Word]) -> list[tuple[Word, bool]]:
    """Runs of SPELT_OUT or more one-letter words become one word, marked as spelt out."""
    joined: list[tuple[Word, bool]] = []
    run: list[Word] = []

    def close_run() -> None:
        if len(run) >= SPELT_OUT:
            word: Word = []
            for letter, index in (single[0] for single in run):
                if not word or word[-1][0] != letter:
                    word.append((letter, index))
            joined.append((word, True))
        else:
            joined.extend((single, False) for single in run)
        run.clear()

    for word in words:
        if len(word) == 1:
            run.append(word)
            continue
        close_run()
        joined.append((word, False))
    close_run()
    return joined


def fold_phrase(phrase: str) -> str:
    """A phrase to look for, folded as messages are."""
    return fold(phrase).text


# -- the same folding, fast ------------------------------------------------------------------------
# `fold` walks the text a character at a time to remember where each letter came from, which costs
# milliseconds on a long message. Screening decides on `quick_fold`, which does the same with string
# methods and regular expressions, and asks `fold` for the spans only when something was found.
# tests/test_screening.py holds the two to the same answer.

_INVISIBLE = re.compile(f"[{''.join(sorted(INVISIBLE))}]")
_APOSTROPHE = re.compile(f"[{''.join(sorted(APOSTROPHES))}]")
_RUNS = re.compile(r"([a-z])\1+")
_SPELT_RUN = re.compile(rf"(?<![a-z])[a-z](?: [a-z]){{{SPELT_OUT - 1},}}(?![a-z])")
_LEET_CHARACTERS = {character: re.compile(re.escape(character)) for character in LEET}
LETTERS_KEPT = 50_000  # distinct characters whose folding is remembered (a bound on memory)


class _Letters(dict[int, str]):
    """A `str.translate` table: each character as `_fold_character` reads it, with everything that is
    not a letter a-z as a space. Filled in as characters are first seen, so one pass over the text
    does what Unicode normalisation, the look-alike table, case folding and accent stripping do."""

    def __missing__(self, code: int) -> str:
        letters = "".join(c if "a" <= c <= "z" else " " for c in _fold_character(chr(code)))
        if len(self) < LETTERS_KEPT:
            self[code] = letters
        return letters


_LETTERS = _Letters({code: chr(code) for code in range(ord("a"), ord("z") + 1)})
_NOT_ASCII = re.compile(r"[^\x00-\x7f]+")


def _fold_run(match: re.Match[str]) -> str:
    return match.group().translate(_LETTERS)


def _leet_reader(original: str) -> Callable[[re.Match[str]], str]:
    """For `re.sub` over `original` or a copy with each character in its place: a leetspeak character
    read against its neighbours as written, not as they have already been read."""

    def read(match: re.Match[str]) -> str:
        return LEET[match.group()] if _leet(original, match.start()) else match.group()

    return read


def _collapse_runs(text: str) -> str:
    """ "heeelp" is "help" (`text` is letters a-z and single spaces)."""
    if len(text) < 256:
        return _RUNS.sub(r"\1", text)
    # A long text at array speed: keep each character that differs from the one before it.
    codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    keep = np.empty(len(codes), dtype=bool)
    keep[0] = True
    np.not_equal(codes[1:], codes[:-1], out=keep[1:])
    return codes[keep].tobytes().decode("ascii")


def quick_fold(original: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """`fold(original).text` and `.spelt`, without the origins."""
    # As `fold` does, every leetspeak character is read against the original: its neighbours as written,
    # invisible characters included, not as already read ("d13" is "di", "k\u200b!ll" is "k l"). A
    # substitution puts one letter in the place of one character, so positions hold until invisible
    # characters go, after.
    text, read = original, _leet_reader(original)
    joining = [m.start() for m in _APOSTROPHE.finditer(original) if _joins(original, m.start())]
    if joining:  # read as invisible characters, which go below (one character for one: positions hold)
        characters = list(original)
        for index in joining:
            characters[index] = "\u200b"
        text = "".join(characters)
    for character, finder in _LEET_CHARACTERS.items():
        if character in original:
            text = finder.sub(read, text)
    text = _INVISIBLE.sub("", text)
    if not text.isascii():  # the other characters first, a run at a time, so the rest takes str's ASCII path
        text = _NOT_ASCII.sub(_fold_run, text)
    text = text.translate(_LETTERS)  # every character as `fold` reads it
    text = _collapse_runs(" ".join(text.split()))
    # Runs of one-letter words: "s n a p" is "snap".
    pieces: list[str] = []
    spelt: list[tuple[int, int]] = []
    length = last = 0  # the length of "".join(pieces); where in `text` the next piece starts
    for run in _SPELT_RUN.finditer(text):
        pieces.append(text[last : run.start()])
        length += run.start() - last
        word = _collapse_runs(run.group().replace(" ", ""))
        spelt.append((length, length + len(word)))
        pieces.append(word)
        length += len(word)
        last = run.end()
    if not spelt:
        return text, ()
    pieces.append(text[last:])
    return "".join(pieces), tuple(spelt)


def fold_for_search(text: str) -> str:
    """A message body as search reads it: folded as screening folds it (messaging keeps it beside the
    body, `COMMONROOM_SEARCH_FOLDER`), so a search for "kill" finds "k1ll" and "KIIILL"."""
    return quick_fold(text)[0]
