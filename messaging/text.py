"""Text people write for others to read: what counts as empty, and what may not change how it reads.

Two disguises get past a plain `str.strip()`:

- A message of invisible characters only (a zero-width space, a Hangul filler, a Braille blank, tag
  characters, an ideographic space) looks empty in the room, yet is a message with an author and a
  sequence number: a way to nudge, or to fill a room with nothing. `is_blank` reads such text as
  empty. It goes by Unicode category (control and format characters, space and line separators),
  plus the few letters, marks and symbols that Unicode's Default_Ignorable_Code_Point property names
  (Python's `unicodedata` does not expose that property). Characters that merely combine with others
  (emoji joiners, variation selectors, accents) still count as part of a message that has something
  visible in it, and are kept.
- Bidirectional controls make text display in another order than it is stored and screened
  ("Trojan Source", CVE-2021-42574): an override can show "gpj.exe" as "exe.jpg", or show a word
  spelt backwards, which screening reads in its stored order and misses. `without_bidi_controls` removes the embeddings,
  overrides and isolates, and the three invisible direction marks too: one right-to-left mark in
  front of "1 2" shows it as "2 1". Right-to-left text displays without them (the bidirectional
  algorithm orders it by its letters; at worst a full stop at the edge of a mixed line lands at the
  other end), and what is stored is then what is shown and what is screened.

Characters newer than Python's Unicode data are unassigned to it and count as visible, so a new emoji
is never refused.
"""

from __future__ import annotations

import re
import unicodedata

# LRE, RLE, PDF, LRO, RLO; LRI, RLI, FSI, PDI; LRM, RLM and the Arabic letter mark.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_BIDI = re.compile("[" + "".join(sorted(BIDI_CONTROLS)) + "]")

# Control and format characters, spaces, line and paragraph separators: nothing of them shows.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
# Format characters that print a sign of their own (Unicode's Prepended_Concatenation_Mark).
_PRINTED_FORMAT = frozenset("\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2\U000110bd\U000110cd")
# Default-ignorable characters outside those categories: the combining grapheme joiner, the Hangul
# fillers, the Khmer inherent vowels, the Mongolian free variation selectors, the variation
# selectors; and the Braille blank, which is a symbol that draws nothing.
_BLANK = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u2800\u3164\uffa0"
    + "".join(chr(code) for code in range(0xFE00, 0xFE10))
)
# Tags, the supplementary variation selectors and the code points Unicode reserves as ignorable.
_IGNORABLE_BLOCK = range(0xE0000, 0xE1000)


def is_invisible(character: str) -> bool:
    if character in _BLANK or ord(character) in _IGNORABLE_BLOCK:
        return True
    return unicodedata.category(character) in _INVISIBLE_CATEGORIES and character not in _PRINTED_FORMAT


def is_blank(text: str) -> bool:
    """True when nothing of `text` would show on the screen (the empty text too)."""
    return all(is_invisible(character) for character in text)


def without_bidi_controls(text: str) -> str:
    return _BIDI.sub("", text)


def tidy(text: str) -> str:
    """A short text such as a reason or a note: without bidi controls, without surrounding white
    space, and empty if nothing of it would show."""
    text = without_bidi_controls(text).strip()
    return "" if is_blank(text) else text
