"""Read-only admin for the audit log. Only platform operators see it, and each look is itself recorded."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest, HttpResponse

from audit.models import AuditEvent
from audit.services import record
from commonroom.admin_views import PermissionBeforeLookup


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

    def _record_reading(self, request: HttpRequest, payload: dict[str, Any]) -> None:
        if self.has_view_permission(request):
            with transaction.atomic():
                record("audit.viewed", school_id=None, actor=request.user, payload=payload)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        self._record_reading(request, {"query": request.GET.urlencode()})
        return super().changelist_view(request, extra_context)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        self._record_reading(request, {"event": object_id, "page": "history"})
        return super().history_view(request, object_id, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        self._record_reading(request, {"event": object_id})
        return super().change_view(request, object_id, form_url, extra_context)
