"""Cases: opened by screening's flags and by people's reports, handled, escalated, resolved.

Every change to a case is one transaction with its audit event (the case's history); alerts and
updates reach the staff's sockets after it commits. Actions on the message, its author or the
room go through messaging's services (which keep their own audit events) inside the same
transaction, with a `case.action` event in the case's history.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from django import db
from django.conf import settings as django_settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django_scopes import scopes_disabled

from audit.services import audited, record
from classes import membership
from classes.models import User
from classes.signals import membership_changed, sessions_ended
from messaging import live
from messaging import services as messaging
from messaging.models import Message, Room
from messaging.policy import as_id
from messaging.services import MessagingError, ReportCategory, room_name
from messaging.text import tidy
from moderation import access
from moderation.models import LEVELS, Case, CaseNote, ModerationSettings, Report, Suspension
from moderation.screening import CATEGORIES

logger = logging.getLogger(__name__)

REPORT_SEVERITY = {
    ReportCategory.HARM: 4,
    ReportCategory.BULLYING: 2,
    ReportCategory.INAPPROPRIATE: 2,
    ReportCategory.PERSONAL_INFORMATION: 2,
    ReportCategory.OTHER: 1,
}
NOTE_MAX = 2000


class CaseError(MessagingError):
    """A refused case action: a stable code and a sentence a person can read."""


class CaseNotFound(CaseError):
    def __init__(self) -> None:
        super().__init__("case_not_found", "There is no such case.")


def category_label(key: str) -> str:
    if key in CATEGORIES:
        return CATEGORIES[key].label
    if key in ReportCategory.values:
        return str(ReportCategory(key).label)
    return key


def starting_level(severity: int, staff_conduct: bool) -> int:
    """Self-harm and other risks of harm (severity 4), and anything about staff, go straight to level 3."""
    if staff_conduct or severity >= 4:
        return 3
    return 2 if severity == 3 else 1


# -- opening and joining -----------------------------------------------------------------------


def open_or_join(
    *,
    message: Message,
    room: Room,
    severity: int,
    categories: list[str],
    reporter: User | None,
    category: str,
    note: str,
    now: datetime,
    about_staff: bool = False,
) -> Case:
    """Open a case about `message`, or add to its unresolved case (raising its severity and level if
    this is more serious). Runs inside the caller's transaction. A case is about staff conduct when a
    member of staff wrote the message, or when it tells of abuse by a member of staff (`about_staff`):
    either way it goes past the room's staff, to the allegations contact or the safeguarding lead."""
    staff_conduct = membership.is_adult(message.author.role) or about_staff
    level = starting_level(severity, staff_conduct)
    with scopes_disabled():
        try:
            with transaction.atomic():
                case = (
                    Case.objects.select_for_update().filter(message=message).exclude(state=Case.State.RESOLVED).first()
                )
                if case is None:
                    case = Case.objects.create(
                        school_id=message.school_id,
                        room=room,
                        message=message,
                        subject_id=message.author_id,
                        staff_conduct=staff_conduct,
                        severity=severity,
                        categories=list(dict.fromkeys(categories)),
                        level=level,
                        opened=now,
                        level_since=now,
                    )
                    Report.objects.create(
                        school_id=case.school_id,
                        case=case,
                        reporter=reporter,
                        category=category,
                        note=note,
                        created=now,
                    )
                    _record(case, "case.opened", reporter, {"category": category, "note": note, "by": _by(reporter)})
                    _announce(case, alert=True, opened=True)
                    return case
        except IntegrityError:  # another report opened it at the same moment: join that one
            case = Case.objects.select_for_update().get(message=message, state__in=_unresolved())
        _add_report(case, reporter, category, note, now)
        changed = ["categories"]
        case.categories = list(dict.fromkeys([*case.categories, *categories]))
        climbed = level > case.level
        # A report of harm on a case already at the top still alerts (and emails) its people.
        urgent = climbed or severity >= 4 > case.severity
        if severity > case.severity:
            case.severity = severity
            changed.append("severity")
        if climbed:
            case.level, case.level_since, case.state = level, now, Case.State.ESCALATED
            changed += ["level", "level_since", "state"]
        case.save(update_fields=changed)
        _record(
            case,
            "case.reported",
            reporter,
            {"category": category, "note": note, "by": _by(reporter), "severity": case.severity, "level": case.level},
        )
        _announce(case, alert=urgent)
    return case


def _add_report(case: Case, reporter: User | None, category: str, note: str, now: datetime) -> None:
    Report.objects.create(
        school_id=case.school_id, case=case, reporter=reporter, category=category, note=note, created=now
    )


def _unresolved() -> list[str]:
    return [state for state in Case.State.values if state != Case.State.RESOLVED]


def _by(reporter: User | None) -> str:
    return "screening" if reporter is None else "report"


def on_message_screened(sender: Any, message: Message, room: Room, verdict: Any, **kwargs: Any) -> None:
    details = verdict.details
    open_or_join(
        message=message,
        room=room,
        severity=int(details.get("severity", 1)),
        categories=list(details.get("categories", [])),
        reporter=None,
        category=verdict.action,
        note=verdict.reason,
        now=message.edited or message.created,
        about_staff=bool(details.get("about_staff")),
    )


def on_message_reported(  # noqa: PLR0917  (a signal receiver takes the signal's arguments)
    sender: Any, message: Message, room: Room, reporter: User, category: str, note: str, **kwargs: Any
) -> None:
    open_or_join(
        message=message,
        room=room,
        severity=REPORT_SEVERITY[ReportCategory(category)],
        categories=[category],
        reporter=reporter,
        category=category,
        note=tidy(note),  # staff read it in the case: no bidi controls, and nothing if nothing shows
        now=timezone.now(),
    )


# -- what staff see -------------------------------------------------------------------------------


def summary(case: Case, settings: ModerationSettings | None = None) -> dict[str, Any]:
    """A case as alerts and the queue show it: no message text (alerts show on screens)."""
    settings = settings or access.settings_for(case.school_id)
    deadline = case.deadline(settings)
    return {
        "id": case.pk,
        "severity": case.severity,
        "level": case.level,
        "level_name": LEVELS[case.level],
        "state": case.state,
        "staff_conduct": case.staff_conduct,
        "categories": [category_label(key) for key in case.categories],
        "room": case.room_id,
        "room_name": room_name(case.room),
        "opened": case.opened.isoformat(),
        "deadline": deadline.isoformat() if deadline else None,
        "url": f"/cases/{case.pk}/",
    }


def _announce(case: Case, *, alert: bool, opened: bool = False) -> None:
    """After commit: an `alert` to the people who must now acknowledge the case, a `case_updated` to
    everyone who sees it; for a risk of harm, or a case nobody can be alerted to, email too. The
    email goes first: it does not depend on the channel layer, so Redis being down loses no email."""
    case_id = case.pk

    def deliver() -> None:
        with scopes_disabled():
            fresh = Case.objects.select_related("room__school_class", "room__cohort").get(pk=case_id)
        must_act = access.alerted(fresh)
        if alert and (fresh.severity >= 4 or not must_act):
            _email_urgent(fresh, nobody_to_alert=not must_act, opened=opened)
        frame = summary(fresh)
        if alert and must_act:
            live.send_frame(sorted(must_act), {"type": "alert", "case": frame})
        live.send_frame(sorted(access.audience(fresh)), {"type": "case_updated", "case": frame})

    # robust: a failure here is logged and does not stop the other after-commit work.
    transaction.on_commit(deliver, robust=True)


def _record(case: Case, action: str, actor: User | None, payload: dict[str, Any]) -> None:
    record(
        action,
        school_id=case.school_id,
        actor=actor,
        target=case,
        target_label=f"case {case.pk}",
        payload={"case": case.pk, "message": case.message_id, "level": case.level, "state": case.state, **payload},
    )


_mailer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="case-mail")
RETRY_SECONDS = (2.0, 10.0)  # the pauses before the second and third tries


def email_later(
    recipients: list[str], subject: str, body: str, failed: Callable[[], None] | None = None
) -> Future[bool] | None:
    """Send in the background: a slow mail server must not hold up the message that opened the case
    (or the clock). One sender thread per process keeps emails in order. If every try fails,
    `failed` runs (in that thread) so the caller can record it and try again later."""
    if not recipients:
        return None
    return _mailer.submit(_send, list(recipients), subject, body, failed)


def _send(recipients: list[str], subject: str, body: str, failed: Callable[[], None] | None = None) -> bool:
    for pause in (*RETRY_SECONDS, None):
        try:
            send_mail(subject, body, django_settings.DEFAULT_FROM_EMAIL, recipients)
            return True
        except Exception:  # a mail server down must not undo the escalation; the log says so
            logger.exception("could not email %s", ", ".join(recipients))
        if pause is not None:
            time.sleep(pause)
    if failed is not None:
        try:
            failed()
        except Exception:
            logger.exception("could not record that an email failed")
        finally:
            db.connection.close()  # this thread's own connection
    return False


def _contacts_not_emailed(case_id: int, school_id: int, stamp: datetime) -> None:
    """The escalation contacts' email failed: say so in the case's history and clear the mark, so
    the clock emails them again at its next tick."""
    with audited(school_id), scopes_disabled():
        if Case.objects.filter(pk=case_id, contacts_emailed=stamp).update(contacts_emailed=None):
            case = Case.objects.get(pk=case_id)
            _record(case, "case.email_failed", None, {"contacts": access.settings_for(school_id).contacts()})


def _email_contacts(case: Case, why: str, stamp: datetime) -> None:
    """Email the school's escalation contacts once `case.contacts_emailed` is set to `stamp` (after commit)."""
    subject, body = _case_mail(case, why)
    failed = partial(_contacts_not_emailed, case.pk, case.school_id, stamp)
    contacts = access.settings_for(case.school_id).contacts()
    transaction.on_commit(partial(email_later, contacts, subject, body, failed), robust=True)


def wait_for_email() -> None:
    """Wait until every email queued so far has been handed to the mail backend (for tests and shutdown)."""
    _mailer.submit(lambda: None).result()


def _case_mail(case: Case, why: str) -> tuple[str, str]:
    """What an email says: never the message itself (email leaves the school's system), only where to look."""
    subject = f"Commonroom: case {case.pk} needs attention ({LEVELS[case.level]})"
    body = (
        f"{why}\n\nCase {case.pk}, severity {case.severity}, in {room_name(case.room)}: "
        f"{', '.join(category_label(key) for key in case.categories)}.\n"
        f"Opened {timezone.localtime(case.opened):%Y-%m-%d %H:%M}. "
        f"Open Commonroom to read it: {django_settings.COMMONROOM_BASE_URL}/cases/{case.pk}/\n"
    )
    return subject, body


def _email_urgent(case: Case, *, nobody_to_alert: bool, opened: bool) -> None:
    if nobody_to_alert:
        stamp = timezone.now()
        with audited(case.school_id), scopes_disabled():
            if not Case.objects.filter(pk=case.pk, contacts_emailed__isnull=True).update(contacts_emailed=stamp):
                return  # another process (or the clock) has emailed them
            contacts = access.settings_for(case.school_id).contacts()
            _record(case, "case.contacts_emailed", None, {"contacts": contacts, "why": "nobody to alert"})
            _email_contacts(case, "Nobody in the school can be alerted to this case.", stamp)
        return
    with scopes_disabled():
        emails = list(
            User.objects.filter(pk__in=access.alerted(case)).exclude(email="").values_list("email", flat=True)
        )
    why = "A case about a risk of harm was opened." if opened else "A case about a risk of harm reached you."
    subject, body = _case_mail(case, why)
    email_later(emails, subject, body)


# -- handling ----------------------------------------------------------------------------------------


def _case(user: User, case_id: Any, *, lock: bool = False) -> Case:
    try:
        return access.case_for(user, case_id, lock=lock)
    except access.CaseNotFound:
        raise CaseNotFound from None


def _open_case(case: Case) -> None:
    if case.state == Case.State.RESOLVED:
        raise CaseError("case_resolved", "This case is resolved.")


def acknowledge(*, user: User, case_id: Any, now: datetime | None = None) -> Case:
    """Someone who sees the case takes it on: its clock stops, and they become its assignee if it has none."""
    now = now or timezone.now()
    with audited(user.school_id), scopes_disabled():
        case = _case(user, case_id, lock=True)
        _open_case(case)
        if case.state == Case.State.ACKNOWLEDGED:
            return case
        case.state, case.acknowledged = Case.State.ACKNOWLEDGED, now
        if case.assignee_id is None:
            case.assignee = user
        case.save(update_fields=["state", "acknowledged", "assignee"])
        _record(case, "case.acknowledged", user, {"assignee": case.assignee_id})
        _announce(case, alert=False)
    return case


def assign(*, user: User, case_id: Any, assignee_id: Any, now: datetime | None = None) -> Case:
    """Give the case to someone who sees it (never to the person it is about)."""
    with audited(user.school_id), scopes_disabled():
        case = _case(user, case_id, lock=True)
        _open_case(case)
        pk = as_id(assignee_id)
        if pk is None or pk not in access.audience(case):
            raise CaseError("invalid_assignee", "A case can only go to someone who handles it.")
        case.assignee_id = pk
        case.save(update_fields=["assignee"])
        _record(case, "case.assigned", user, {"assignee": pk})
        _announce(case, alert=False)
    return case


def escalate(*, user: User, case_id: Any, reason: Any, now: datetime | None = None) -> Case:
    """Hand the case up a level by hand, with a reason; the new level's people are alerted."""
    now = now or timezone.now()
    text = messaging._reason(reason, "Say why you are escalating the case (up to 500 characters).")
    with audited(user.school_id), scopes_disabled():
        case = _case(user, case_id, lock=True)
        _open_case(case)
        if case.level >= 3 or case.staff_conduct:
            raise CaseError("top_level", "This case is already with the safeguarding lead.")
        _climb(case, now, actor=user, reason=text)
    return case


def _climb(case: Case, now: datetime, *, actor: User | None, reason: str) -> None:
    case.level, case.level_since, case.state = case.level + 1, now, Case.State.ESCALATED
    case.save(update_fields=["level", "level_since", "state"])
    _record(case, "case.escalated", actor, {"reason": reason, "automatic": actor is None})
    _announce(case, alert=True)


def resolve(*, user: User, case_id: Any, outcome: Any, note: Any = None, now: datetime | None = None) -> Case:
    now = now or timezone.now()
    if outcome not in Case.Outcome.values:
        raise CaseError("invalid_outcome", "Choose the outcome of the case.")
    text = messaging._optional_reason(note)
    with audited(user.school_id), scopes_disabled():
        case = _case(user, case_id, lock=True)
        _open_case(case)
        case.state, case.outcome, case.resolved = Case.State.RESOLVED, outcome, now
        if case.acknowledged is None:
            case.acknowledged = now
        case.save(update_fields=["state", "outcome", "resolved", "acknowledged"])
        _record(case, "case.resolved", user, {"outcome": outcome, "note": text})
        _announce(case, alert=False)
    return case


def add_note(*, user: User, case_id: Any, text: Any, now: datetime | None = None) -> CaseNote:
    now = now or timezone.now()
    body = "" if text is None else tidy(str(text))
    if not body or len(body) > NOTE_MAX:
        raise CaseError("invalid_note", f"A note is text of 1 to {NOTE_MAX} characters.")
    with audited(user.school_id), scopes_disabled():
        case = _case(user, case_id)
        note = CaseNote.objects.create(school_id=case.school_id, case=case, author=user, text=body, created=now)
        _record(case, "case.note_added", user, {"note": body})
        _announce(case, alert=False)
    return note


# -- actions from a case --------------------------------------------------------------------------


class CaseAction:
    HIDE = "hide_message"
    RESTORE = "restore_message"
    APPROVE = "approve_message"
    MUTE = "mute_author"
    UNMUTE = "unmute_author"
    LOCK = "lock_room"
    UNLOCK = "unlock_room"
    SUSPEND = "suspend_author"
    UNSUSPEND = "restore_author"

    ALL = (HIDE, RESTORE, APPROVE, MUTE, UNMUTE, LOCK, UNLOCK, SUSPEND, UNSUSPEND)
    NEEDS_REASON = (HIDE, MUTE, LOCK, SUSPEND)


GENERAL_NOTICE = {
    CaseAction.HIDE: "Removed by staff after a review.",
    CaseAction.MUTE: "Muted by staff after a review.",
    CaseAction.LOCK: "Locked by staff.",
    CaseAction.SUSPEND: "Suspended by staff after a review.",
}


def take_action(*, user: User, case_id: Any, action: Any, reason: Any = None, now: datetime | None = None) -> Case:
    """Act on the case's message, its author or its room, with a reason, recorded in the case's history.

    The person affected sees the reason where the school allows it (`tell_reasons`), otherwise a
    general notice; the case's history always keeps the reason."""
    now = now or timezone.now()
    if action not in CaseAction.ALL:
        raise CaseError("invalid_action", "That is not an action on a case.")
    if action in CaseAction.NEEDS_REASON:
        text = messaging._reason(reason, "Give a reason (up to 500 characters).")
    else:
        text = messaging._optional_reason(reason)
    with audited(user.school_id), scopes_disabled():
        case = _case(user, case_id, lock=True)
        told = text if access.settings_for(case.school_id).tell_reasons else GENERAL_NOTICE.get(action, "")
        message_id, room_id, author_id = case.message_id, case.room_id, case.subject_id
        if action == CaseAction.HIDE:
            messaging.remove_message(user=user, message_id=message_id, reason=told, now=now)
        elif action == CaseAction.RESTORE:
            messaging.restore_message(user=user, message_id=message_id, reason=text, now=now)
        elif action == CaseAction.APPROVE:
            messaging.approve_message(user=user, message_id=message_id, now=now)
        elif action == CaseAction.MUTE:
            messaging.mute(user=user, room_id=room_id, student_id=author_id, reason=told, now=now)
        elif action == CaseAction.UNMUTE:
            messaging.unmute(user=user, room_id=room_id, student_id=author_id, reason=text, now=now)
        elif action == CaseAction.LOCK:
            messaging.lock_room(user=user, room_id=room_id, reason=told, now=now)
        elif action == CaseAction.UNLOCK:
            messaging.unlock_room(user=user, room_id=room_id, reason=text, now=now)
        elif action == CaseAction.SUSPEND:
            _suspend(user, case, reason=text, now=now)
        else:
            _unsuspend(user, case, reason=text, now=now)
        _record(case, "case.action", user, {"action": action, "reason": text, "told": told})
        _announce(case, alert=False)
    return case


def _suspend(user: User, case: Case, *, reason: str, now: datetime) -> None:
    if not access.may_suspend(user, case):
        raise CaseError("not_allowed", "Only moderators and the safeguarding lead can suspend an account.")
    subject = User.objects.select_for_update().get(pk=case.subject_id)
    if subject.suspended:
        raise CaseError("already_suspended", "This account is already suspended.")
    Suspension.objects.create(
        school_id=case.school_id, user=subject, case=case, reason=reason, suspended_by=user, created=now
    )
    User.objects.filter(pk=subject.pk).update(suspended=True)
    record(
        "account.suspended",
        school_id=case.school_id,
        actor=user,
        target=subject,
        target_label=subject.username,
        payload={"case": case.pk, "reason": reason},
    )
    sessions_ended.send(sender=User, user_ids={subject.pk})  # their open sockets close


def _unsuspend(user: User, case: Case, *, reason: str, now: datetime) -> None:
    if not access.may_suspend(user, case):
        raise CaseError("not_allowed", "Only moderators and the safeguarding lead can lift a suspension.")
    if not Suspension.objects.filter(user_id=case.subject_id, ended__isnull=True).update(ended=now):
        raise CaseError("not_suspended", "This account is not suspended.")
    User.objects.filter(pk=case.subject_id).update(suspended=False)
    membership_changed.send(sender=User, user_ids={case.subject_id})  # they take part in their rooms again
    record(
        "account.restored",
        school_id=case.school_id,
        actor=user,
        target=case.subject,
        target_label=case.subject.username,
        payload={"case": case.pk, "reason": reason},
    )


def suspension_notice(user: User) -> str | None:
    """What a suspended person is told when they try to sign in (the reason, where the school allows
    it), or None if they are not suspended."""
    if not user.suspended or not user.enabled or user.school_id is None:
        return None
    with scopes_disabled():
        found = Suspension.objects.filter(user=user, ended__isnull=True).values_list("reason", flat=True).first()
    if found is None:
        return None
    return found if access.settings_for(user.school_id).tell_reasons else GENERAL_NOTICE[CaseAction.SUSPEND]


# -- the clock -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    escalated: list[int]
    emailed: list[int]


def escalate_overdue(now: datetime | None = None) -> Tick:
    """Climb every case nobody acknowledged in time; at level 3, email the school's escalation contacts
    (once). Safe to run from several processes at once: each change is made by one of them only."""
    now = now or timezone.now()
    escalated: list[int] = []
    emailed: list[int] = []
    settings: dict[int, ModerationSettings] = {}
    with scopes_disabled():
        # Level 3 is the top: a case there is only waited on until its contacts have been emailed.
        waiting = list(
            Case.objects.filter(state__in=Case.WAITING)
            .filter(Q(level__lt=3, staff_conduct=False) | Q(contacts_emailed__isnull=True))
            .select_related("room")
        )
    for case in waiting:
        school = settings.setdefault(case.school_id, access.settings_for(case.school_id))
        deadline = case.deadline(school)
        if deadline is None or deadline > now:
            continue
        with audited(case.school_id), scopes_disabled():
            current = (
                Case.objects.select_for_update()
                .filter(pk=case.pk, state__in=Case.WAITING, level=case.level, level_since=case.level_since)
                .first()
            )
            if current is None:
                continue  # acknowledged or moved meanwhile (or by another process)
            if current.level < 3 and not current.staff_conduct:
                _climb(current, now, actor=None, reason="Not acknowledged in time.")
                escalated.append(current.pk)
            elif current.contacts_emailed is None:
                current.contacts_emailed = now
                current.save(update_fields=["contacts_emailed"])
                _record(current, "case.contacts_emailed", None, {"contacts": school.contacts()})
                _email_contacts(current, "Nobody has acknowledged this case in time.", now)
                emailed.append(current.pk)
    return Tick(escalated, emailed)
