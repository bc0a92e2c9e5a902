"""Checks that the records the audit log describes still say what the log says they said.

The hash chain shows that the log itself is unchanged; it says nothing of the rows it is about. A
message's text changed in the database shows in its room with no trace in the log. So an app whose
records the log describes provides a check comparing the two, and names it in the
COMMONROOM_RECORD_CHECKS setting: audit/ sits below every other app and imports none of them, so
`audit_verify` finds the checks by name, as messaging/ finds its screeners.

A check is a callable taking a school id (None: every school) and a function to call with each
`RecordFinding`, and answering how many records it checked. It reads the records in chunks, in one
pass, with no query per record: it runs over every message there is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class RecordFinding:
    """A record that does not match the audit log.

    - `chain`: the chain that should describe it.
    - `record`: the record, as a person would name it ("message 41 (room 7 #12)").
    - `detail`: what does not match, never the record's content (it may be a child's message).
    """

    chain: str
    record: str
    detail: str

    def __str__(self) -> str:
        return f"{self.chain}: {self.record}: {self.detail}"


Found = Callable[[RecordFinding], None]
RecordCheck = Callable[[int | None, Found], int]


def record_checks() -> list[tuple[str, RecordCheck]]:
    """The checks named in the COMMONROOM_RECORD_CHECKS setting, each with its name."""
    return [(path, import_string(path)) for path in settings.COMMONROOM_RECORD_CHECKS]
