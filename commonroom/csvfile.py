"""Writing CSV that people open in a spreadsheet, so that no cell of it runs as a formula.

A spreadsheet reads a cell that begins with `=`, `+`, `-` or `@` (or a tab or carriage return
before one) as a formula. A message body such as `=HYPERLINK("http://x","click")` in an export
would then become a live link, or worse, on the safeguarding lead's computer (OWASP, "CSV
Injection"). `write_csv` is how the product writes a CSV for people: it prefixes such a text cell
with a single quote, as OWASP advises, and leaves the rest of the value as it was. The quote shows
in the cell, so a reader sees the text that was written, never its result.

The OneRoster bundles of `classes.rostergen` do not go through it: they are an input format, read
back by the import, whose values must arrive exactly as written.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralised(value: Any) -> Any:
    """A text cell a spreadsheet would read as a formula, quoted; any other value unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def write_csv(out: IO[str], fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]], **options: Any) -> None:
    """A header and `rows` (each a mapping by field name), every cell neutralised; `options` go to
    `csv.DictWriter`."""
    writer = csv.DictWriter(out, fieldnames=fieldnames, **options)
    writer.writeheader()
    writer.writerows({key: neutralised(value) for key, value in row.items()} for row in rows)
