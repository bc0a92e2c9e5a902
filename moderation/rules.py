"""Each school's screen: the built-in categories with the school's own actions, severities and phrases.

A school's screen is compiled once and kept in the process for `TTL` seconds, so the send path does
not query the rules; a change saved in this process takes effect at once, in other processes within
`TTL` seconds.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_scopes import scopes_disabled

from messaging.models import Message
from messaging.services import Verdict
from moderation import access
from moderation.models import ScreeningRule
from moderation.screening import (
    ANSWER,
    CATEGORIES,
    CONTEXT,
    Action,
    Category,
    Result,
    Screen,
    default_screen,
    screen_text,
)

TTL = 30.0  # seconds

_lock = threading.Lock()
_screens: dict[int, tuple[float, Screen]] = {}


def apply_rules(rules: list[ScreeningRule]) -> dict[str, Category]:
    categories = dict(CATEGORIES)
    for rule in rules:
        base = categories.get(rule.category)
        if base is None:
            continue  # a category that no longer exists
        action = Action(rule.action) if rule.action else base.action
        if action == Action.REJECT and base.never_reject:
            action = Action.HOLD  # a cry for help is never silently dropped, whatever a rule says
        categories[rule.category] = replace(
            base, action=action, severity=rule.severity or base.severity, phrases=base.phrases + rule.phrase_list()
        )
    return categories


def school_screen(school_id: int | None) -> Screen:
    """The screen of a school (the built-in one for none, or for a school without rules)."""
    if school_id is None:
        return default_screen()
    moment = time.monotonic()
    cached = _screens.get(school_id)
    if cached is not None and cached[0] > moment:
        return cached[1]
    with scopes_disabled():
        rules = list(ScreeningRule.objects.filter(school_id=school_id))
    screen = Screen.build(apply_rules(rules)) if rules else default_screen()
    with _lock:
        _screens[school_id] = (moment + TTL, screen)
    return screen


def forget(school_id: int) -> None:
    """Drop a school's compiled screen (its rules changed)."""
    with _lock:
        _screens.pop(school_id, None)


def forget_all() -> None:
    with _lock:
        _screens.clear()


def on_rule_saved(sender: Any, instance: ScreeningRule, **kwargs: Any) -> None:
    # At once for this transaction, and again once it commits, so that no screen read meanwhile lingers.
    forget(instance.school_id)
    transaction.on_commit(partial(forget, instance.school_id))


def screen_for(text: str, school_id: int | None, *, spans: bool = True, context: Sequence[str] = ()) -> Result:
    return screen_text(text, school_screen(school_id), spans=spans, context=context)


CONTEXT_HOURS = 3  # how far back the author's recent messages are read with a new one

STAFF_WORDS = re.compile(r"\b(?:sir|miss|mr|mrs|ms|teacher|coach|tutor|head|headteacher|form tutor)\b")


def recent_messages(author: Any, now: datetime | None = None) -> list[str]:
    """The author's last few messages (any room of theirs) from the last hours, oldest first: a
    disclosure spread over several short messages is read as one."""
    since = (now or timezone.now()) - timedelta(hours=CONTEXT_HOURS)
    with scopes_disabled():
        bodies = Message.objects.filter(author_id=author.pk, created__gte=since).exclude(state=Message.State.REMOVED)
        return list(bodies.order_by("-created").values_list("body", flat=True)[:CONTEXT])[::-1]


def screen_message(body: str, room: Any, author: Any) -> Verdict:
    """The screener messaging calls before saving a message (see COMMONROOM_SCREENERS)."""
    result = screen_for(body, room.school_id, spans=False, context=recent_messages(author))
    if not result.categories:
        return Verdict()
    # Categories found but allowed (profanity, by default) are still recorded in the message's audit event.
    shown = result.as_dict()
    answered = any(category.answered for category in result.found)
    details: dict[str, Any] = {
        "categories": list(result.categories),
        "severity": result.severity,
        "matches": shown["matches"],
        "scores": shown["scores"],
    }
    if "abuse_disclosure" in result.categories and any(
        STAFF_WORDS.search(m.text) for m in result.matches if m.category == "abuse_disclosure"
    ):
        details["about_staff"] = True  # an allegation against staff: the staff-conduct route
    return Verdict(result.action.value, result.reason, details, note=answer(room.school_id) if answered else "")


def answer(school_id: int) -> str:
    """What a student whose message tells of self-harm or abuse is answered at once: that a trusted adult
    will check in with them, and where the school says help can be found now."""
    lines = access.settings_for(school_id).help_lines()
    if not lines:
        return ANSWER
    return f"{ANSWER}\nIf you need to talk to someone now: " + " · ".join(lines)
