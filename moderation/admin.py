"""Moderation in the admin: each school's screening rules (actions, severities, its own phrases) and
escalation settings, set by the school's admin. Cases are handled in the app, never in the admin:
school admins do not read children's messages."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django_scopes import scopes_disabled

from classes import access
from classes.admin import ProvisioningAdmin, admin_site
from moderation.models import ModerationSettings, ScreeningRule


@admin.register(ScreeningRule, site=admin_site)
class ScreeningRuleAdmin(ProvisioningAdmin):
    list_display = ("category", "action", "severity", "updated")
    fields = ("category", "action", "severity", "phrases")


@admin.register(ModerationSettings, site=admin_site)
class ModerationSettingsAdmin(ProvisioningAdmin):
    list_display = ("__str__", "level_1_minutes", "level_2_minutes", "level_3_minutes", "tell_reasons")
    fields = (
        "level_1_minutes",
        "level_2_minutes",
        "level_3_minutes",
        "escalation_contacts",
        "allegations_contact",
        "tell_reasons",
        "help_sources",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        """One row per school: a school admin changes it once it exists."""
        school = access.administered_school(request.user)
        if school is not None:
            with scopes_disabled():
                if ModerationSettings.objects.filter(school=school).exists():
                    return False
        return super().has_add_permission(request)
