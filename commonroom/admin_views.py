"""What every admin page of Commonroom shares."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse


class PermissionBeforeLookup:
    """Django's history page looks the object up before it asks for permission: someone without the
    permission would get 403 for an id that exists and a redirect for one that does not, and so learn
    which ids exist (audit events, another school's departments). Ask first, as the change page does."""

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_or_change_permission(request):  # type: ignore[attr-defined]  # a ModelAdmin's
            raise PermissionDenied
        return super().history_view(request, object_id, extra_context)  # type: ignore[misc, no-any-return]
