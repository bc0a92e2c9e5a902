"""Read-only admin for the audit log. Only platform operators see it, and each look is itself recorded.

The log holds the text of children's messages, so reading it is reading them: the operator gives a
reason first (`audit.looks`, the same reasons as the safeguarding review pages), which holds in their
session for REASON_MINUTES. Every list, event and history page then records `audit.viewed` on the
platform chain, and, for each school whose events the page showed, a look at that school (an
`AccessRecord` through `audit.looks.looked`) naming the people whose messages its `message.*` events
are about: the operator shows in that school's "who looked" for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from audit import looks
from audit.models import AuditEvent
from audit.services import audited, record
from commonroom.admin_views import PermissionBeforeLookup

REASON_KEY = "audit_reason"  # session key: why the operator reads the audit log, and until when it holds
REASON_MINUTES = 30


def whose_messages(events: Iterable[AuditEvent]) -> dict[int, set[int]]:
    """The authors of the messages that the `message.*` events among `events` are about, by school. The
    log itself says who wrote each message: the actor of its `message.sent` event."""
    about = {e.target_id for e in events if e.action.startswith("message.") and e.target_type == "messaging.message"}
    found: dict[int, set[int]] = {}
    if about:
        sent = AuditEvent.all_chains.filter(action="message.sent", target_type="messaging.message", target_id__in=about)
        for school_id, author_id in sent.values_list("school_id", "actor_id"):
            if school_id is not None and author_id is not None:
                found.setdefault(school_id, set()).add(author_id)
    return found


class AuditEventAdmin(PermissionBeforeLookup, admin.ModelAdmin[AuditEvent]):
    list_display = ("created", "chain", "seq", "action", "actor_label", "target_type", "target_label")
    list_filter = ("action",)
    search_fields = ("action", "actor_label", "target_label", "target_id")
    date_hierarchy = "created"
    actions = None

    def _operator(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and user.is_superuser and getattr(user, "school_id", None) is None)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._operator(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._operator(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # -- the reason ---------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        reason = path("reason/", self.admin_site.admin_view(self.reason_view), name="audit_auditevent_reason")
        return [reason, *super().get_urls()]

    def _held_reason(self, request: HttpRequest) -> looks.GivenReason | None:
        return looks.held(request.session, REASON_KEY)

    def _asked(self, request: HttpRequest) -> looks.GivenReason | HttpResponse | None:
        """The operator's reason; the reason form if they have given none lately; None for anyone who is
        not an operator, whom the page itself refuses (before it looks anything up)."""
        if not self._operator(request):
            return None
        reason = self._held_reason(request)
        if reason is None:
            return redirect(
                f"{reverse(f'{self.admin_site.name}:audit_auditevent_reason')}?next={quote(request.get_full_path())}"
            )
        return reason

    def reason_view(self, request: HttpRequest) -> HttpResponse:
        """Why are you reading the audit log? Asked first, again after REASON_MINUTES."""
        if not self._operator(request):
            raise PermissionDenied
        error = ""
        if request.method == "POST":
            try:
                reason = looks.check_reason(request.POST.get("reason"), request.POST.get("text"))
            except looks.InvalidReason as exc:
                error = str(exc)
            else:
                looks.hold(request.session, REASON_KEY, reason, REASON_MINUTES)
                return redirect(self._next(request))
        context = {
            **self.admin_site.each_context(request),
            "title": "Why are you reading the audit log?",
            "reasons": looks.Reason.choices,
            "current": self._held_reason(request),
            "minutes": REASON_MINUTES,
            "error": error,
            "next": self._next(request),
        }
        return TemplateResponse(request, "admin/audit/auditevent/reason.html", context)

    def _next(self, request: HttpRequest) -> str:
        target = request.POST.get("next") or request.GET.get("next") or ""
        if url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return target
        return reverse(f"{self.admin_site.name}:audit_auditevent_changelist")

    # -- the pages, each on the record ---------------------------------------------------------------

    def _record_reading(
        self, request: HttpRequest, reason: looks.GivenReason, payload: dict[str, Any], shown: list[AuditEvent]
    ) -> None:
        """`audit.viewed` on the platform chain, and a look at each school whose events the page showed."""
        authors = whose_messages(shown)
        schools = sorted({event.school_id for event in shown if event.school_id is not None})
        given = {"reason": reason.reason, "reason_text": reason.text}
        with transaction.atomic():
            record("audit.viewed", school_id=None, actor=request.user, payload={**payload, **given, "schools": schools})
            for school_id in schools:
                with audited(school_id):
                    looks.record_look(
                        reader=request.user,
                        school_id=school_id,
                        reason=reason,
                        kind="audit log",
                        query=payload,
                        subjects=authors.get(school_id, set()),
                    )

    def _event(self, request: HttpRequest, object_id: str, response: HttpResponse) -> list[AuditEvent]:
        found = self.get_object(request, unquote(object_id)) if response.status_code == 200 else None
        return [] if found is None else [found]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        reason = self._asked(request)
        if isinstance(reason, HttpResponse):
            return reason
        response = super().changelist_view(request, extra_context)
        if reason is not None:
            listing = (getattr(response, "context_data", None) or {}).get("cl")
            shown = list(listing.result_list) if listing is not None else []
            self._record_reading(request, reason, {"query": request.GET.urlencode()}, shown)
        return response

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        reason = self._asked(request)
        if isinstance(reason, HttpResponse):
            return reason
        response = super().history_view(request, object_id, extra_context)
        if reason is not None:
            shown = self._event(request, object_id, response)
            self._record_reading(request, reason, {"event": object_id, "page": "history"}, shown)
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "POST":
            return super().change_view(request, object_id, form_url, extra_context)  # refused: events never change
        reason = self._asked(request)
        if isinstance(reason, HttpResponse):
            return reason
        response = super().change_view(request, object_id, form_url, extra_context)
        if reason is not None:
            self._record_reading(request, reason, {"event": object_id}, self._event(request, object_id, response))
        return response
