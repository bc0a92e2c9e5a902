"""The acceptable-use policy in the admin: school admins publish new versions; versions never change."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from classes import access
from classes.admin import ProvisioningAdmin, admin_site
from messaging import services
from messaging.models import AcceptableUsePolicy


@admin.register(AcceptableUsePolicy, site=admin_site)
class AcceptableUsePolicyAdmin(ProvisioningAdmin):
    list_display = ("version", "published")
    fields = ("text",)
    readonly_fields = ()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: AcceptableUsePolicy, form: Any, change: bool) -> None:
        school = access.administered_school(request.user)
        if school is None:
            raise PermissionDenied("Policies are published by the school's admin.")
        try:
            saved = services.publish_policy(actor=request.user, school_id=school.pk, text=obj.text)  # type: ignore[arg-type]
        except services.MessagingError as exc:
            raise PermissionDenied(exc.detail) from exc
        obj.pk = saved.pk
