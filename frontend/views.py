"""The pages: sign in, the acceptable-use policy, home (the person's rooms), a room, and the profile.

Pages are rendered on the server, so they read well without JavaScript and
to a screen reader; `static/frontend/chat.js` then keeps them live over the
socket. Every room is fetched through `messaging.policy` (via the services),
so a room that is not the person's answers 404 exactly like one that does not
exist.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from itertools import groupby
from typing import Any, cast
from urllib.parse import quote

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.crypto import get_random_string
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods
from django_scopes import scopes_disabled

from audit import looks
from classes.models import CohortMembership, CohortStaff, Enrollment, School, StaffRole, User
from messaging import services
from messaging.models import Message, PolicyAcceptance
from moderation import access as case_access
from moderation import casefile, cases, exports, review
from moderation.dashboard import dashboard
from moderation.models import AccessRecord

POLICY_LATER = "policy_later"  # session key: the person chose to read without accepting, for this session

KINDS = {"class": "Class rooms", "cohort": "Year group rooms"}
ROLE_LABELS = dict(User.Role.choices)


@functools.cache
def _decoy_hash() -> str:
    """A password hash no one knows the password of, made once per process."""
    return make_password(get_random_string(32))


class SignInForm(AuthenticationForm):
    """Django's sign-in form; a suspended person who gives their right password is told why they cannot
    sign in (with the reason, where the school allows it), instead of a puzzling refusal."""

    def clean(self) -> dict[str, Any]:
        try:
            return super().clean()
        except ValidationError:
            notice = self._suspension()
            if notice is not None:
                raise ValidationError(notice, code="suspended") from None
            raise

    def _suspension(self) -> str | None:
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if not username or not password:
            return None
        person = User.objects.filter(username=username, suspended=True).first()
        if person is None:
            # The same work as checking a password, so the time of the answer does not tell
            # someone without the password that the account is suspended.
            check_password(password, _decoy_hash())
            return None
        if not person.check_password(password):
            return None
        reason = cases.suspension_notice(person)
        if reason is None:
            return None
        ending = "" if reason.endswith((".", "!", "?")) else "."
        return f"Your account is suspended: {reason}{ending} Speak to your school."


class SignInView(auth_views.LoginView):
    """Django's sign-in, with the school's own message when the page knows which school it is for.

    `/login/?school=<id>` names the school (the link a school puts on its devices); an
    installation that serves one school shows that school's message without it.
    """

    template_name = "frontend/login.html"
    redirect_authenticated_user = True
    authentication_form = SignInForm

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["school"] = self._school()
        return context

    def _school(self) -> School | None:
        with scopes_disabled():
            schools = School.objects.filter(active=True)
            wanted = self.request.GET.get("school", "")
            if wanted.isdigit():
                return schools.filter(pk=int(wanted)).first()
            only = list(schools[:2])
            return only[0] if len(only) == 1 else None


def _user(request: HttpRequest) -> User:
    return cast(User, request.user)  # login_required has run


def _safe_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return fallback


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    status = services.policy_status(user)
    if status is not None and not status["accepted"] and not request.session.get(POLICY_LATER):
        return redirect("policy")
    rooms = services.room_summaries(user)
    groups = [
        {"kind": kind, "title": KINDS[kind], "rooms": list(group)}
        for kind, group in groupby(sorted(rooms, key=lambda r: (r["kind"] != "class", r["name"])), lambda r: r["kind"])
    ]
    return render(request, "frontend/home.html", {"groups": groups, "policy": status, "page": "home"})


ROOM_REASONS = "room_reasons"  # session key: why the person reads rooms they are not a member of, by room
ROOM_REASON_MINUTES = 30


def _room_reason(request: HttpRequest, room_id: int) -> review.Reason | None:
    return looks.held(request.session, ROOM_REASONS, within=str(room_id))


def _hold_room_reason(request: HttpRequest, room_id: int, reason: review.Reason) -> None:
    looks.hold(request.session, ROOM_REASONS, reason, ROOM_REASON_MINUTES, within=str(room_id))


@require_http_methods(["GET", "POST"])
@login_required
def room(request: HttpRequest, room_id: int) -> HttpResponse:
    """A room. A moderator or the safeguarding lead who is not a member says why first (asked again after
    ROOM_REASON_MINUTES), and every showing of the page is recorded with that reason; the page hands the
    reason to the client, which gives it again on the socket before it loads any message."""
    user = _user(request)
    try:
        the_room, people = services.room_people(user, room_id)
    except services.MessagingError:
        raise Http404("There is no such room.") from None
    summary = services.room_summary(user, the_room)
    reason = None
    if summary["reason_required"]:
        error = ""
        if request.method == "POST":
            try:
                given = review.check_reason(request.POST.get("reason"), request.POST.get("text"))
            except review.InvalidReview as exc:
                error = str(exc)
            else:
                _hold_room_reason(request, the_room.pk, given)
                return redirect("room", room_id=the_room.pk)
        reason = None if error else _room_reason(request, the_room.pk)
        if reason is None:
            context = {"room": summary, "reasons": AccessRecord.Reason.choices, "error": error, "page": "room"}
            return render(request, "frontend/room_reason.html", context)
        services.look_at_room(
            user=user, room_id=the_room.pk, reason=reason.reason, reason_text=reason.text, kind="room page"
        )
    elif request.method == "POST":
        return redirect("room", room_id=the_room.pk)  # a member needs no reason
    for person in people:
        person["role_label"] = ROLE_LABELS.get(person["role"], person["role"])
    return render(
        request,
        "frontend/room.html",
        {
            "room": summary,
            "people": people,
            "school": the_room.school,
            "max_length": Message.MAX_LENGTH,
            "categories": services.ReportCategory.choices,
            "reasons": AccessRecord.Reason.choices,
            "look_reason": reason,
            "page": "room",
        },
    )


@require_http_methods(["GET", "POST"])
@login_required
def policy(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    status = services.policy_status(user)
    if status is None:
        return redirect("home")
    error = ""
    if request.method == "POST":
        if "later" in request.POST:
            request.session[POLICY_LATER] = True
            return redirect(_safe_next(request, "/"))
        try:
            services.accept_policy(user=user, version=_version(request.POST.get("version")))
        except services.MessagingError as exc:
            error = exc.detail
            status = services.policy_status(user)
        else:
            request.session.pop(POLICY_LATER, None)
            return redirect(_safe_next(request, "/"))
    return render(
        request,
        "frontend/policy.html",
        {"policy": status, "error": error, "next": _safe_next(request, ""), "page": "policy"},
    )


def _version(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


@require_GET
@login_required
def profile(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    # The request is scoped to the person's school (classes.middleware): these queries stay in it.
    classes = (
        Enrollment.objects.filter(user=user, active=True).select_related("school_class").order_by("school_class__title")
    )
    cohorts = CohortMembership.objects.filter(user=user, end_date__isnull=True).select_related("cohort")
    cohorts_staffed = CohortStaff.objects.filter(user=user, active=True).select_related("cohort")
    roles = StaffRole.objects.filter(user=user)
    acceptances = PolicyAcceptance.objects.filter(user=user).select_related("policy").order_by("-accepted")
    context = {
        "person": user,
        "role_label": ROLE_LABELS.get(user.role, user.role),
        "classes": [(e.school_class.title, e.get_role_display()) for e in classes],
        "cohorts": [m.cohort.name for m in cohorts] + [f"{s.cohort.name} (staff)" for s in cohorts_staffed],
        "roles": [r.get_role_display() for r in roles],
        "acceptance": acceptances.first(),
        "policy": services.policy_status(user),
        "page": "profile",
    }
    return render(request, "frontend/profile.html", context)


# -- cases ------------------------------------------------------------------------------------------


@require_GET
@login_required
def case_queue(request: HttpRequest) -> HttpResponse:
    """The moderator queue: the person's unresolved cases by severity and age (kept live by the client)."""
    user = _user(request)
    if not case_access.sees_cases(user):
        raise Http404("There is no such page.")
    return render(request, "frontend/cases.html", {**casefile.queue(user), "page": "cases"})


CaseStep = Callable[[User, int, Any], object]  # the person, the case id, the POST data
CASE_STEPS: dict[str, CaseStep] = {
    "acknowledge": lambda user, case_id, post: cases.acknowledge(user=user, case_id=case_id),
    "assign": lambda user, case_id, post: cases.assign(user=user, case_id=case_id, assignee_id=post.get("assignee")),
    "escalate": lambda user, case_id, post: cases.escalate(user=user, case_id=case_id, reason=post.get("reason")),
    "resolve": lambda user, case_id, post: cases.resolve(
        user=user, case_id=case_id, outcome=post.get("outcome"), note=post.get("note")
    ),
    "note": lambda user, case_id, post: cases.add_note(user=user, case_id=case_id, text=post.get("text")),
    "act": lambda user, case_id, post: cases.take_action(
        user=user, case_id=case_id, action=post.get("action"), reason=post.get("reason")
    ),
}
DONE = {
    "acknowledge": "You have acknowledged the case.",
    "assign": "The case is assigned.",
    "escalate": "The case is escalated.",
    "resolve": "The case is resolved.",
    "note": "Your note is added.",
    "act": "Done.",
}


@require_http_methods(["GET", "POST"])
@login_required
def case(request: HttpRequest, case_id: int) -> HttpResponse:
    """A case: the message in context (with its edited and removed versions), reports, notes, history,
    and what can be done; each POST is one step, then back to the page."""
    user = _user(request)
    if request.method == "POST":
        step = CASE_STEPS.get(request.POST.get("step", ""))
        if step is None:
            messages.error(request, "That is not something you can do to a case.")
        else:
            try:
                step(user, case_id, request.POST)
            except cases.CaseNotFound:
                raise Http404("There is no such case.") from None
            except services.MessagingError as exc:
                messages.error(request, exc.detail)
            else:
                messages.success(request, DONE[request.POST["step"]])
        return redirect("case", case_id=case_id)
    try:
        context = casefile.open_case(user, case_id)
    except cases.CaseNotFound:
        raise Http404("There is no such case.") from None
    return render(request, "frontend/case.html", {**context, "page": "case"})


# -- safeguarding review --------------------------------------------------------------------------------

REVIEW_REASON = "review_reason"  # session key: why the reviewer is looking, and until when it holds
REVIEW_REASON_MINUTES = 60


def _reviewer(request: HttpRequest) -> User:
    user = _user(request)
    if not review.may_review(user):
        raise Http404("There is no such page.")
    return user


def _review_reason(request: HttpRequest) -> review.Reason | None:
    return looks.held(request.session, REVIEW_REASON)


def _ask_reason(request: HttpRequest) -> HttpResponse:
    return redirect(f"/review/?next={quote(request.get_full_path())}")


@require_http_methods(["GET", "POST"])
@login_required
def review_home(request: HttpRequest) -> HttpResponse:
    """Why are you looking? Asked before any review page, again after an hour; every look records it."""
    _reviewer(request)
    error = ""
    if request.method == "POST":
        try:
            reason = review.check_reason(request.POST.get("reason"), request.POST.get("text"))
        except review.InvalidReview as exc:
            error = str(exc)
        else:
            looks.hold(request.session, REVIEW_REASON, reason, REVIEW_REASON_MINUTES)
            return redirect(_safe_next(request, "/review/search/"))
    return render(
        request,
        "frontend/review.html",
        {
            "reasons": AccessRecord.Reason.choices,
            "current": _review_reason(request),
            "error": error,
            "next": _safe_next(request, ""),
            "page": "review",
        },
    )


@require_GET
@login_required
def review_search(request: HttpRequest) -> HttpResponse:
    user = _reviewer(request)
    reason = _review_reason(request)
    if reason is None:
        return _ask_reason(request)
    events = request.GET.get("in") == "events"
    context: dict[str, Any] = {"page": "review", "reason": reason, "query": request.GET, "events": events}
    if request.GET:
        try:
            filters = review.filters_from(request.GET)
            if events:
                context["event_result"] = review.search_events(user, reason, filters)
            else:
                context["result"] = review.search(user, reason, filters)
        except review.InvalidReview as exc:
            context["error"] = str(exc)
    return render(request, "frontend/review_search.html", context)


@require_GET
@login_required
def review_message(request: HttpRequest, message_id: int) -> HttpResponse:
    user = _reviewer(request)
    reason = _review_reason(request)
    if reason is None:
        return _ask_reason(request)
    try:
        message, lines = review.message_in_context(user, reason, message_id)
    except review.ReviewNotFound:
        raise Http404("There is no such message.") from None
    return render(request, "frontend/review_message.html", {"message": message, "context": lines, "page": "review"})


@require_GET
@login_required
def review_person(request: HttpRequest, person_id: int) -> HttpResponse:
    user = _reviewer(request)
    reason = _review_reason(request)
    if reason is None:
        return _ask_reason(request)
    try:
        person, entries = review.chronology(user, reason, person_id)
    except review.ReviewNotFound:
        raise Http404("There is no such person.") from None
    return render(request, "frontend/review_person.html", {"person": person, "entries": entries, "page": "review"})


@require_GET
@login_required
def review_access(request: HttpRequest, person_id: int) -> HttpResponse:
    user = _reviewer(request)
    reason = _review_reason(request)
    if reason is None:
        return _ask_reason(request)
    try:
        person, looks = review.who_looked(user, reason, person_id)
    except review.ReviewNotFound:
        raise Http404("There is no such person.") from None
    return render(request, "frontend/review_access.html", {"person": person, "looks": looks, "page": "review"})


EXPORTS = {
    "search": lambda user, reason, request, fmt, pk: exports.export_search(
        user, reason, review.filters_from(request.GET), fmt
    ),
    "case": lambda user, reason, request, fmt, pk: exports.export_case(user, reason, pk, fmt),
    "person": lambda user, reason, request, fmt, pk: exports.export_chronology(user, reason, pk, fmt),
}


@require_GET
@login_required
def review_export(request: HttpRequest, kind: str, pk: int | None = None) -> HttpResponse:
    """A ZIP of the data (CSV, JSON, or PDF for a case) and its manifest; recorded like any look."""
    user = _reviewer(request)
    reason = _review_reason(request)
    if reason is None:
        return _ask_reason(request)
    try:
        name, body = EXPORTS[kind](user, reason, request, request.GET.get("format", "csv"), pk)
    except (review.ReviewNotFound, KeyError):
        raise Http404("There is no such thing to export.") from None
    except (review.InvalidReview, exports.InvalidExport) as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    response = HttpResponse(body, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_GET
@login_required
def review_dashboard(request: HttpRequest) -> HttpResponse:
    user = _reviewer(request)
    reason = _review_reason(request)
    if reason is None:
        return _ask_reason(request)
    return render(request, "frontend/review_dashboard.html", {**dashboard(user, reason), "page": "review"})
