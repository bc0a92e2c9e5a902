"""What the staff see of cases: the queue, and a case with its message in context and its history.

Opening a case shows message text that the room may no longer see (removed and earlier versions,
read from the audit log), so every opening is itself recorded (`case.viewed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from django_scopes import scopes_disabled

from audit.models import AuditEvent
from audit.services import record
from classes.models import User
from messaging.models import Message, Mute
from moderation import access
from moderation.cases import _case, category_label, summary
from moderation.models import Case, CaseNote, Report, Suspension

CONTEXT = 5  # messages before and after the one the case is about
VERSION_ACTIONS = (
    "message.sent",
    "message.edited",
    "message.removed",
    "message.deleted",
    "message.approved",
    "message.restored",
)


def queue(user: User, now: datetime | None = None) -> dict[str, Any]:
    """The person's unresolved cases, most severe and then oldest first, and the latest resolved ones."""
    now = now or timezone.now()
    with scopes_disabled():
        visible = access.visible_cases(user).select_related("room__school_class", "room__cohort", "subject", "assignee")
        settings = access.settings_for(user.school_id) if user.school_id is not None else None
        waiting = list(visible.exclude(state=Case.State.RESOLVED).order_by("-severity", "opened"))
        counts = dict(
            Report.objects.filter(case__in=[case.pk for case in waiting])
            .values("case")
            .annotate(n=Count("pk"))
            .values_list("case", "n")
        )
        resolved = list(visible.filter(state=Case.State.RESOLVED).order_by("-resolved")[:20])
    rows = []
    for case in waiting:
        row = summary(case, settings)
        deadline = case.deadline(settings) if settings is not None else None
        row.update(
            subject=case.subject.full_name or case.subject.username,
            assignee=(case.assignee.full_name or case.assignee.username) if case.assignee else "",
            reports=counts.get(case.pk, 0),
            age_minutes=int((now - case.opened).total_seconds() // 60),
            overdue=deadline is not None and deadline <= now,
            deadline_at=deadline,
            opened_at=case.opened,
        )
        rows.append(row)
    return {
        "open": rows,
        "resolved": [
            {**summary(case, settings), "outcome": case.get_outcome_display(), "resolved_at": case.resolved}
            for case in resolved
        ],
    }


@dataclass
class MessageInContext:
    message: Message
    versions: list[dict[str, Any]]
    is_subject: bool


def in_context(message: Message, around: int = CONTEXT) -> list[MessageInContext]:
    """The messages around `message` in its room, every one with every version of its text (sent, edited,
    removed, approved, restored) from the audit log. The caller has authorized the reading and records it."""
    with scopes_disabled():
        lines = list(
            Message.objects.filter(
                room_id=message.room_id, seq__gte=message.seq - around, seq__lte=message.seq + around
            )
            .select_related("author", "removed_by")
            .order_by("seq")
        )
        events = AuditEvent.objects.filter(
            school_id=message.school_id,
            target_type="messaging.message",
            target_id__in=[str(m.pk) for m in lines],
            action__in=VERSION_ACTIONS,
        ).order_by("chain", "seq")
        versions: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            versions.setdefault(event.target_id, []).append(
                {
                    "action": event.action,
                    "when": event.created,
                    "who": event.actor_label,
                    "body": event.payload.get("body", ""),
                    "reason": event.payload.get("reason", ""),
                }
            )
    return [MessageInContext(m, versions.get(str(m.pk), []), m.pk == message.pk) for m in lines]


def open_case(user: User, case_id: Any, now: datetime | None = None) -> dict[str, Any]:
    """Everything the case page shows; the opening is recorded."""
    now = now or timezone.now()
    case = _case(user, case_id)
    settings = access.settings_for(case.school_id)
    context = in_context(case.message)
    with scopes_disabled():
        history = list(
            AuditEvent.objects.filter(school_id=case.school_id, target_type="moderation.case", target_id=str(case.pk))
            .order_by("chain", "seq")
            .values("action", "created", "actor_label", "payload")
        )
        reports = list(Report.objects.filter(case=case).select_related("reporter").order_by("created"))
        notes = list(CaseNote.objects.filter(case=case).select_related("author").order_by("created"))
        handlers = list(User.objects.filter(pk__in=access.audience(case)).order_by("family_name", "given_name"))
        muted = Mute.objects.filter(room_id=case.room_id, user_id=case.subject_id, ended__isnull=True).exists()
        suspended = Suspension.objects.filter(user_id=case.subject_id, ended__isnull=True).exists()
    with transaction.atomic():
        record(
            "case.viewed",
            school_id=case.school_id,
            actor=user,
            target=case,
            target_label=f"case {case.pk}",
            payload={"case": case.pk, "messages": [line.message.pk for line in context]},
        )
    return {
        "case": case,
        "summary": summary(case, settings),
        "deadline": case.deadline(settings),
        "categories": [category_label(key) for key in case.categories],
        "context": context,
        "history": history,
        "reports": reports,
        "notes": notes,
        "handlers": handlers,
        "room_locked": bool(case.room.locked_reason),
        "muted": muted,
        "suspended": suspended,
        "may_suspend": access.may_suspend(user, case),
        "outcomes": Case.Outcome.choices,
    }
