"""Exports for the safeguarding lead: a search result, a case or a chronology, as CSV or JSON, and a case as
a PDF for a referral. Each is a ZIP of the data file and a manifest (`audit.manifest`) naming the audit
events it comes from, so a recipient can check it with `manage.py audit_verify_export`. An export is a
look like any other: it needs a reason and is recorded (kind `export`) before the manifest is made, so
the manifest's head is the export's own audit event.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from django.utils import timezone
from django_scopes import scopes_disabled
from fpdf import FPDF

from audit import manifest
from audit.models import AuditEvent, chain_for_school
from classes.models import User
from commonroom.csvfile import write_csv
from messaging.models import Message
from moderation.casefile import VERSION_ACTIONS, in_context
from moderation.cases import category_label
from moderation.models import Case, CaseNote
from moderation.review import (
    Filters,
    Reason,
    ReviewNotFound,
    chronology_of,
    matching,
    person_of,
    record_look,
    review_cases,
    review_events,
    review_reports,
    reviewer_of,
    room_label,
)

FORMATS = ("csv", "json")
EXPORT_MAX = 10_000  # messages in one search export
CHUNK = 1000


class InvalidExport(Exception):
    pass


def _check_format(fmt: str, allowed: tuple[str, ...] = FORMATS) -> str:
    if fmt not in allowed:
        raise InvalidExport(f"Choose a format: {', '.join(allowed)}.")
    return fmt


def _message_events(school_id: int, message_ids: list[int]) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    with scopes_disabled():
        for start in range(0, len(message_ids), CHUNK):
            ids = [str(pk) for pk in message_ids[start : start + CHUNK]]
            events += AuditEvent.objects.filter(
                school_id=school_id, target_type="messaging.message", target_id__in=ids, action__in=VERSION_ACTIONS
            )
    return events


def _table(fmt: str, kind: str, rows: list[dict[str, Any]]) -> tuple[str, bytes]:
    if fmt == "json":
        return f"{kind}.json", json.dumps({"kind": kind, "records": rows}, indent=2, default=str).encode()
    out = io.StringIO()
    write_csv(out, list(rows[0]) if rows else ["empty"], rows)  # cells that would run as formulas, quoted
    return f"{kind}.csv", out.getvalue().encode()


def _finish(
    user: User,
    reason: Reason,
    *,
    kind: str,
    query: dict[str, Any],
    subjects: set[int],
    data: tuple[str, bytes],
    events: Iterable[AuditEvent],
) -> tuple[str, bytes]:
    school_id = int(user.school_id or 0)
    record_look(user, reason, "export", {"export": kind, **query}, subjects)
    name, body = data
    about = {
        "export": kind,
        "query": query,
        "generated": timezone.now().isoformat(),
        "generated_by": user.username,
        "reason": reason.reason,
        "reason_text": reason.text,
        "school": school_id,
    }
    with scopes_disabled():
        built = manifest.build(chain=chain_for_school(school_id), events=events, data_name=name, data=body, about=about)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return f"commonroom-{kind}-{stamp}.zip", manifest.package(name, body, built)


def _message_row(message: Message) -> dict[str, Any]:
    return {
        "id": message.pk,
        "room": room_label(message),
        "seq": message.seq,
        "author_id": message.author_id,
        "author": message.author.full_name or message.author.username,
        "created": message.created.isoformat(),
        "edited": message.edited.isoformat() if message.edited else "",
        "state": message.state,
        "body": message.body,
        "removed_reason": message.removed_reason,
    }


def export_search(user: Any, reason: Reason, filters: Filters, fmt: str) -> tuple[str, bytes]:
    reviewer = reviewer_of(user)
    _check_format(fmt)
    with scopes_disabled():
        messages = list(matching(reviewer, filters)[:EXPORT_MAX])
    rows = [_message_row(m) for m in messages]
    events = _message_events(int(reviewer.school_id or 0), [m.pk for m in messages])
    return _finish(
        reviewer,
        reason,
        kind="search",
        query=filters.as_query(),
        subjects={m.author_id for m in messages},
        data=_table(fmt, "search", rows),
        events=events,
    )


def export_chronology(user: Any, reason: Reason, person_id: Any, fmt: str) -> tuple[str, bytes]:
    reviewer = reviewer_of(user)
    _check_format(fmt)
    person = person_of(reviewer, person_id)
    entries, events = chronology_of(reviewer, person)
    rows = [{"when": e.when.isoformat(), "what": e.what, "detail": e.detail, "link": e.link} for e in entries]
    return _finish(
        reviewer,
        reason,
        kind="chronology",
        query={"person": person.pk},
        subjects={person.pk},
        data=_table(fmt, "chronology", rows),
        events=events,
    )


def _case_records(reviewer: User, case: Case) -> tuple[list[dict[str, Any]], list[AuditEvent], set[int]]:
    """A case as rows (section, when, who, what, text), the audit events it comes from, whose messages;
    read, like every review page, through the querysets that leave out what is about the reviewer."""
    lines = in_context(case.message)
    rows: list[dict[str, Any]] = [
        {"section": "case", "when": case.opened.isoformat(), "who": case.subject.username,
         "what": f"case {case.pk}: severity {case.severity}, level {case.level}, {case.get_state_display()}"
                 + (f", {case.get_outcome_display()}" if case.outcome else ""),
         "text": ", ".join(category_label(key) for key in case.categories)},
    ]  # fmt: skip
    with scopes_disabled():
        for report in review_reports(reviewer).filter(case=case).select_related("reporter").order_by("created"):
            who = report.reporter.username if report.reporter else "screening"
            rows.append({"section": "report", "when": report.created.isoformat(), "who": who,
                         "what": report.category, "text": report.note})  # fmt: skip
        for note in CaseNote.objects.filter(case=case).select_related("author").order_by("created"):
            rows.append({"section": "note", "when": note.created.isoformat(), "who": note.author.username,
                         "what": "note", "text": note.text})  # fmt: skip
        history = list(review_events(reviewer).filter(target_type="moderation.case", target_id=str(case.pk)))
    for event in sorted(history, key=lambda e: e.seq):
        rows.append({"section": "history", "when": event.created.isoformat(), "who": event.actor_label,
                     "what": event.action, "text": str(event.payload.get("reason", ""))})  # fmt: skip
    for line in lines:
        for version in line.versions:
            rows.append({"section": "message" if line.is_subject else "context", "when": version["when"].isoformat(),
                         "who": line.message.author.username, "what": f"#{line.message.seq} {version['action']}",
                         "text": version["body"] or version["reason"]})  # fmt: skip
    events = history + _message_events(case.school_id, [line.message.pk for line in lines])
    return rows, events, {line.message.author_id for line in lines}


def export_case(user: Any, reason: Reason, case_id: Any, fmt: str) -> tuple[str, bytes]:
    """A case for a referral: the case, its reports, notes and history, and the conversation around it."""
    reviewer = reviewer_of(user)
    _check_format(fmt, (*FORMATS, "pdf"))
    from moderation.access import CaseNotFound, case_for  # noqa: PLC0415  (cases only through the policy)

    try:
        case = case_for(reviewer, case_id)
    except CaseNotFound:
        raise ReviewNotFound from None
    with scopes_disabled():
        if not review_cases(reviewer).filter(pk=case.pk).exists():  # a case about the reviewer (invariant 6)
            raise ReviewNotFound
    rows, events, subjects = _case_records(reviewer, case)
    data = _pdf(case, rows) if fmt == "pdf" else _table(fmt, "case", rows)
    return _finish(reviewer, reason, kind="case", query={"case": case.pk}, subjects=subjects, data=data, events=events)


FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _pdf(case: Case, rows: list[dict[str, Any]]) -> tuple[str, bytes]:
    """The case as a PDF. With the DejaVu font installed, any text prints; without it, characters outside
    Latin-1 print as "?" (the JSON export keeps the exact text)."""
    pdf = FPDF()
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    unicode_font = FONT.exists()
    if unicode_font:
        pdf.add_font("body", fname=str(FONT))
        pdf.set_font("body", size=10)
    else:
        pdf.set_font("helvetica", size=10)

    def text(value: str) -> str:
        return value if unicode_font else value.encode("latin-1", "replace").decode("latin-1")

    pdf.set_font_size(16)
    pdf.multi_cell(0, 8, text(f"Commonroom case {case.pk}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font_size(10)
    pdf.multi_cell(0, 5, text(f"Exported {timezone.localtime():%Y-%m-%d %H:%M %Z}. See manifest.json to verify it."),
                   new_x="LMARGIN", new_y="NEXT")  # fmt: skip
    section = ""
    for row in rows:
        if row["section"] != section:
            section = row["section"]
            pdf.ln(3)
            pdf.set_font_size(12)
            pdf.multi_cell(0, 6, text(section.title()), new_x="LMARGIN", new_y="NEXT")
            pdf.set_font_size(10)
        when = datetime.fromisoformat(row["when"])
        line = f"{timezone.localtime(when):%Y-%m-%d %H:%M}  {row['who']}  {row['what']}"
        pdf.multi_cell(
            0, 5, text(line + (f"\n    {row['text']}" if row["text"] else "")), new_x="LMARGIN", new_y="NEXT"
        )
    return f"case-{case.pk}.pdf", bytes(pdf.output())


__all__ = ["InvalidExport", "export_case", "export_chronology", "export_search"]
