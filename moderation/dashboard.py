"""The safeguarding lead's dashboard: what is open and how old, what is being flagged week by week, where,
and how fast each level acknowledges against the school's deadlines. Counts only: no message text."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django_scopes import scopes_disabled

from messaging.services import room_name
from moderation.access import settings_for
from moderation.cases import category_label
from moderation.models import LEVELS, Case
from moderation.review import Reason, record_look, review_cases, review_reports, reviewer_of

WEEKS = 12


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    x: int = 0  # drawing positions for the SVG, worked out here so the template only prints them
    y: int = 0
    height: int = 0


def _bars(values: list[tuple[str, int]], *, height: int = 120, width: int = 28, gap: int = 8) -> dict[str, Any]:
    """A bar chart's bars and its width, for an SVG drawn by the template."""
    top = max((value for _, value in values), default=0) or 1
    bars = []
    for index, (label, value) in enumerate(values):
        tall = round(value / top * height)
        bars.append(Bar(label, value, x=index * (width + gap), y=height - tall, height=tall))
    return {"bars": bars, "width": len(values) * (width + gap)}


def _week(moment: datetime, now: datetime) -> int:
    """How many whole weeks before `now` (0: the last seven days)."""
    return int((now - moment).total_seconds() // (7 * 86400))


def dashboard(user: Any, reason: Reason, now: datetime | None = None) -> dict[str, Any]:
    reviewer = reviewer_of(user)
    now = now or timezone.now()
    school_id = int(reviewer.school_id or 0)
    settings = settings_for(school_id)
    since = now - timedelta(weeks=WEEKS)
    with scopes_disabled():
        cases = review_cases(reviewer)  # never those about the reviewer (invariant 6)
        unresolved = list(cases.exclude(state=Case.State.RESOLVED))
        recent = list(cases.filter(opened__gte=since).select_related("room"))
        flags = list(
            review_reports(reviewer)
            .filter(reporter__isnull=True, created__gte=since)
            .select_related("case__room__school_class", "case__room__cohort")
            .only("created", "case__room")
        )
        acknowledged = list(
            cases.filter(acknowledged__isnull=False, opened__gte=since).only("level", "level_since", "acknowledged")
        )
    open_levels = []
    for level, name in LEVELS.items():
        at_level = [case for case in unresolved if case.level == level]
        oldest = max(((now - case.opened) for case in at_level), default=None)
        overdue = sum(1 for case in at_level if (case.deadline(settings) or now) < now)
        open_levels.append(
            {
                "level": level,
                "name": name,
                "count": len(at_level),
                "overdue": overdue,
                "oldest_hours": round(oldest.total_seconds() / 3600, 1) if oldest else None,
            }
        )
    per_week: Counter[int] = Counter(_week(case.opened, now) for case in recent)
    flags_per_week: Counter[int] = Counter(_week(flag.created, now) for flag in flags)
    categories: Counter[str] = Counter(key for case in recent for key in case.categories)
    weeks = list(range(WEEKS - 1, -1, -1))

    def label(week: int) -> str:
        return "this week" if week == 0 else f"{week} wk ago"

    rooms: Counter[str] = Counter(room_name(flag.case.room) for flag in flags)
    acknowledge = []
    for level, name in LEVELS.items():
        minutes = [
            (case.acknowledged - case.level_since).total_seconds() / 60
            for case in acknowledged
            if case.level == level and case.acknowledged is not None
        ]
        acknowledge.append(
            {
                "level": level,
                "name": name,
                "cases": len(minutes),
                "median": round(statistics.median(minutes), 1) if minutes else None,
                "worst": round(max(minutes), 1) if minutes else None,
                "deadline": settings.deadline_minutes(level),
                "late": sum(1 for value in minutes if value > settings.deadline_minutes(level)),
            }
        )
    record_look(reviewer, reason, "dashboard", {"weeks": WEEKS}, set())
    return {
        "open_levels": open_levels,
        "cases_chart": _bars([(label(week), per_week[week]) for week in weeks]),
        "flags_chart": _bars([(label(week), flags_per_week[week]) for week in weeks]),
        "categories": [(category_label(key), count) for key, count in categories.most_common()],
        "rooms": rooms.most_common(10),
        "acknowledge": acknowledge,
        "weeks": WEEKS,
    }
