"""Activate the school scope (and the school's time zone) for each request.

Everything a request reads through a scoped manager is limited to the school
of the person signed in. Platform operators (superusers without a school) see
every school; someone signed out sees no school at all.
"""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from classes.access import is_platform_operator


class SchoolScopeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if is_platform_operator(user):
            with scopes_disabled():
                return self.get_response(request)
        school_id = getattr(user, "school_id", None) if user.is_authenticated else None
        # Times on pages are the school's local times.
        school = getattr(user, "school", None) if school_id is not None else None
        zone = ZoneInfo(school.time_zone) if school is not None else None
        # django-scopes reads a scope of None as "no filter"; an empty list means "no school".
        with scope(school=[school_id] if school_id is not None else []), timezone.override(zone):
            return self.get_response(request)
