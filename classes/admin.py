"""The admin: provisioning for school admins, and everything for platform operators.

A school admin sees only their own school: every scoped model is filtered by
the request's school scope (classes.middleware), people are filtered here,
and no object can be moved to another school. Nothing is ever deleted from
the admin; changes go through the audited services.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from audit.admin import AuditEventAdmin
from audit.models import AuditEvent
from audit.services import record
from classes import access, services
from classes.models import (
    AcademicSession,
    Cohort,
    CohortStaff,
    Enrollment,
    Organisation,
    School,
    SchoolClass,
    StaffRole,
    User,
)
from classes.oneroster import BundleError
from classes.roster_import import InvalidBundle, import_bundle
from classes.signals import sessions_ended
from commonroom.admin_views import PermissionBeforeLookup


class ProvisioningLoginForm(AdminAuthenticationForm):
    """Sign-in for the admin: platform operators and school admins, whatever Django's is_staff says."""

    def confirm_login_allowed(self, user: Any) -> None:
        if not user.is_active:
            raise ValidationError(self.error_messages["inactive"], code="inactive")
        if not access.may_provision(user):
            raise ValidationError(
                self.error_messages["invalid_login"],
                code="invalid_login",
                params={"username": self.username_field.verbose_name},
            )


class CommonroomAdminSite(admin.AdminSite):
    site_header = "Commonroom administration"
    site_title = "Commonroom"
    index_title = "Provisioning"
    login_form = ProvisioningLoginForm

    def has_permission(self, request: HttpRequest) -> bool:
        return access.may_provision(request.user)

    def get_urls(self) -> list[Any]:
        return [
            path("import-roster/", self.admin_view(import_roster_view), name="import_roster"),
            *super().get_urls(),
        ]


admin_site = CommonroomAdminSite(name="admin")


def checked_form(form_class: Any, model_admin: Any, request: HttpRequest) -> Any:
    """`form_class` whose clean() also asks `model_admin.check_form(request, cleaned_data, instance)`, so
    that a provisioning service's refusal (a ProvisioningError) shows as a form error, before anything
    is saved, rather than as a refused request after."""

    class Checked(form_class):  # type: ignore[misc]
        def clean(self) -> Any:
            cleaned = super().clean()
            check = getattr(model_admin, "check_form", None)
            if check is not None and not self.errors:
                try:
                    check(request, cleaned, self.instance)
                except services.ProvisioningError as exc:
                    raise ValidationError(str(exc)) from exc
            return cleaned

    Checked.__name__ = form_class.__name__
    return Checked


class ProvisioningAdmin(PermissionBeforeLookup, admin.ModelAdmin[Any]):
    """Visible to platform operators and school admins; never deletes; keeps objects in their school."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return access.may_provision(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return access.may_provision(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return access.may_provision(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return access.may_provision(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_exclude(self, request: HttpRequest, obj: Model | None = None) -> Any:
        exclude = list(super().get_exclude(request, obj) or [])
        if not access.is_platform_operator(request.user):
            exclude.append("school")
        return exclude

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        school = access.administered_school(request.user)
        if school is not None and db_field.related_model is User:
            kwargs["queryset"] = access.people_of(school)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        return checked_form(super().get_form(request, obj, change=change, **kwargs), self, request)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Save a generic admin form in the admin's school, with its audit event, in one transaction."""
        school = access.administered_school(request.user)
        if school is not None and hasattr(obj, "school_id"):
            if change and obj.school_id != school.pk:
                raise PermissionDenied
            obj.school_id = school.pk
        action = f"{obj._meta.model_name}.{'updated' if change else 'created'}"
        services.save_provisioned(actor=request.user, obj=obj, action=action, fields=form.changed_data)  # type: ignore[arg-type]


@admin.register(School, site=admin_site)
class SchoolAdmin(ProvisioningAdmin):
    list_display = ("name", "identifier", "time_zone", "final_grade", "alumni_keep_access", "active")
    # The identity of the school, then the settings its admin changes (through change_school_settings).
    fields = ("identifier", "organisation", *services.SCHOOL_SETTINGS, "active")
    readonly_fields = ("identifier", "organisation", "active")
    actions = ["close_school_year"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return access.is_platform_operator(request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        if access.is_platform_operator(request.user) and obj is None:
            return ()
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: School, form: Any, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        settings_changed = {
            name: form.cleaned_data[name] for name in services.SCHOOL_SETTINGS if name in form.changed_data
        }
        fresh = School.objects.get(pk=obj.pk)
        services.change_school_settings(actor=request.user, school=fresh, **settings_changed)  # type: ignore[arg-type]

    @admin.action(description="Close the current school year (graduate the final cohort, archive classes)")
    def close_school_year(self, request: HttpRequest, queryset: QuerySet[School]) -> None:
        for school in queryset:
            try:
                result = services.close_year(actor=request.user, school=school)  # type: ignore[arg-type]
            except services.ProvisioningError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.message_user(
                request,
                f"{school}: closed {result.school_year}; Class of {result.graduated_cohort} graduated "
                f"({result.graduates} students), {result.classes_archived} classes archived, "
                f"{result.enrollments_ended} enrollments ended.",
                messages.SUCCESS,
            )


@admin.register(Organisation, site=admin_site)
class OrganisationAdmin(ProvisioningAdmin):
    list_display = ("name", "kind", "sourced_id", "active")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return access.is_platform_operator(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return access.is_platform_operator(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return access.is_platform_operator(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return access.is_platform_operator(request.user)


@admin.register(AcademicSession, site=admin_site)
class AcademicSessionAdmin(ProvisioningAdmin):
    list_display = ("title", "kind", "start_date", "end_date", "school_year", "active", "closed")
    list_filter = ("kind", "active", "closed")
    readonly_fields = ("closed",)


@admin.register(Cohort, site=admin_site)
class CohortAdmin(ProvisioningAdmin):
    list_display = ("name", "graduation_year", "status", "graduated_on")
    list_filter = ("status",)
    readonly_fields = ("status", "graduated_on")


@admin.register(CohortStaff, site=admin_site)
class CohortStaffAdmin(ProvisioningAdmin):
    list_display = ("user", "cohort", "active")
    list_filter = ("active",)
    fields = ("cohort", "user")
    list_select_related = ("user", "cohort")
    actions = ["detach"]

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # staff are attached and detached, never edited into someone else

    def check_form(self, request: HttpRequest, cleaned: dict[str, Any], instance: CohortStaff) -> None:
        services.check_cohort_staff(actor=request.user, cohort=cleaned["cohort"], user=cleaned["user"])  # type: ignore[arg-type]

    def save_model(self, request: HttpRequest, obj: CohortStaff, form: Any, change: bool) -> None:
        try:
            saved = services.attach_to_cohort(actor=request.user, cohort=obj.cohort, user=obj.user)  # type: ignore[arg-type]
        except services.ProvisioningError as exc:
            raise PermissionDenied(str(exc)) from exc
        obj.pk = saved.pk

    @admin.action(description="Detach the selected staff from their year groups")
    def detach(self, request: HttpRequest, queryset: QuerySet[CohortStaff]) -> None:
        for staff in queryset:
            services.detach_from_cohort(actor=request.user, staff=staff)  # type: ignore[arg-type]


@admin.register(SchoolClass, site=admin_site)
class SchoolClassAdmin(ProvisioningAdmin):
    list_display = ("title", "code", "course_title", "status")
    list_filter = ("status",)
    search_fields = ("title", "code", "course_title")
    readonly_fields = ("sourced_id",)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        school = access.administered_school(request.user)
        if school is not None and db_field.name == "terms":
            kwargs["queryset"] = AcademicSession.objects.filter(school=school)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(Enrollment, site=admin_site)
class EnrollmentAdmin(ProvisioningAdmin):
    fields = ("school_class", "user", "role")
    list_display = ("user", "school_class", "role", "begin_date", "end_date", "active")
    list_filter = ("role", "active")
    search_fields = ("user__username", "user__family_name", "school_class__title")
    list_select_related = ("user", "school_class")
    actions = ["end_enrollments"]

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # enrollments are added and ended, never edited

    def check_form(self, request: HttpRequest, cleaned: dict[str, Any], instance: Enrollment) -> None:
        services.check_enrollment(
            actor=request.user,  # type: ignore[arg-type]
            school_class=cleaned["school_class"],
            user=cleaned["user"],
            role=cleaned["role"],
        )

    def save_model(self, request: HttpRequest, obj: Enrollment, form: Any, change: bool) -> None:
        try:
            saved = services.enroll(
                actor=request.user,  # type: ignore[arg-type]
                school_class=obj.school_class,
                user=obj.user,
                role=obj.role,
            )
        except services.ProvisioningError as exc:
            raise PermissionDenied(str(exc)) from exc
        obj.pk = saved.pk

    @admin.action(description="End the selected enrollments")
    def end_enrollments(self, request: HttpRequest, queryset: QuerySet[Enrollment]) -> None:
        for enrollment in queryset:
            services.end_enrollment(actor=request.user, enrollment=enrollment, reason="ended in the admin")  # type: ignore[arg-type]


@admin.register(StaffRole, site=admin_site)
class StaffRoleAdmin(ProvisioningAdmin):
    fields = ("user", "role", "cohorts")
    list_display = ("user", "role", "source", "active")
    list_filter = ("role", "source", "active")
    list_select_related = ("user",)
    actions = ["revoke_roles"]

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # roles are granted and revoked, never edited

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        school = access.administered_school(request.user)
        if school is not None and db_field.name == "cohorts":
            kwargs["queryset"] = Cohort.objects.filter(school=school)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: StaffRole, form: Any, change: bool) -> None:
        school = access.administered_school(request.user) or obj.user.school
        if school is None:
            raise PermissionDenied("This person belongs to no school.")
        try:
            saved = services.grant_role(
                actor=request.user,  # type: ignore[arg-type]
                school=school,
                user=obj.user,
                role=obj.role,
                cohorts=list(form.cleaned_data.get("cohorts") or []),
            )
        except services.ProvisioningError as exc:
            raise PermissionDenied(str(exc)) from exc
        obj.pk = saved.pk

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # grant_role has set the cohorts

    @admin.action(description="Revoke the selected roles")
    def revoke_roles(self, request: HttpRequest, queryset: QuerySet[StaffRole]) -> None:
        for staff_role in queryset.select_related("user"):
            try:
                services.revoke_role(actor=request.user, staff_role=staff_role)  # type: ignore[arg-type]
            except services.ProvisioningError as exc:
                self.message_user(request, f"{staff_role}: {exc}", messages.ERROR)


@admin.register(User, site=admin_site)
class PersonAdmin(PermissionBeforeLookup, DjangoUserAdmin[User]):  # type: ignore[type-var]  # works with any AbstractBaseUser
    list_display = ("username", "given_name", "family_name", "role", "school", "enabled")
    list_filter = ("role", "enabled")
    search_fields = ("username", "given_name", "family_name", "email", "sourced_id")
    ordering = ("family_name", "given_name")
    readonly_fields = ("sourced_id", "last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Person", {"fields": ("given_name", "family_name", "email", "birth_date", "grade", "role", "school")}),
        ("Status", {"fields": ("enabled", "sourced_id", "last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"fields": ("username", "given_name", "family_name", "role", "password1", "password2")}),)
    filter_horizontal = ()

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        queryset = super().get_queryset(request)
        if access.is_platform_operator(request.user):
            return queryset
        school = access.administered_school(request.user)
        return queryset.filter(school=school) if school is not None else queryset.none()

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        fields = list(self.readonly_fields)
        if not access.is_platform_operator(request.user):
            fields += ["school", "is_superuser", "is_staff"]
        return fields

    def has_module_permission(self, request: HttpRequest) -> bool:
        return access.may_provision(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return access.may_provision(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return access.may_provision(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if obj is None:
            return access.may_provision(request.user)
        return access.may_manage_account(request.user, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        return checked_form(super().get_form(request, obj, change=change, **kwargs), self, request)

    def check_form(self, request: HttpRequest, cleaned: dict[str, Any], instance: User) -> None:
        if "role" in cleaned:
            services.check_person_role(person_id=instance.pk, role=cleaned["role"])

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        with transaction.atomic():
            response = super().user_change_password(request, id, form_url)
            if request.method == "POST" and response.status_code == 302:
                person = self.get_object(request, id)
                if person is not None:
                    record(
                        "person.password_set",
                        school_id=person.school_id,
                        actor=request.user,
                        target=person,
                        target_label=person.username,
                    )
                    # A new password ends the person's sessions (Django's session hash changes); their
                    # open sockets close too, rather than going on with the old one.
                    sessions_ended.send(sender=type(person), user_ids={person.pk})
        return response

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        school = access.administered_school(request.user)
        if school is not None:
            obj.school = school
        action = "person.updated" if change else "person.added"
        services.save_provisioned(actor=request.user, obj=obj, action=action, fields=form.changed_data)  # type: ignore[arg-type]


admin_site.register(AuditEvent, AuditEventAdmin)


class ImportRosterForm(forms.Form):
    bundle = forms.FileField(help_text="A OneRoster 1.1 CSV bundle as a .zip file.")

    def clean_bundle(self) -> Any:
        upload = self.cleaned_data["bundle"]
        limit = settings.ROSTER_UPLOAD_MAX_MB
        if upload.size > limit * 1024 * 1024:
            raise ValidationError(f"The file is larger than {limit} MB; import it with `manage.py import_oneroster`.")
        return upload


def import_roster_view(request: HttpRequest) -> HttpResponse:
    """Upload a bundle and see the same result as `manage.py import_oneroster`."""
    context: dict[str, Any] = {**admin_site.each_context(request), "title": "Import a OneRoster bundle"}
    form = ImportRosterForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["bundle"]
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / "bundle.zip"
            with target.open("wb") as handle:
                for chunk in upload.chunks():
                    handle.write(chunk)
            try:
                result = _import_for(request, target, upload.name)
            except InvalidBundle as exc:
                context["problems"] = [str(p) for p in exc.problems]
            except BundleError as exc:
                context["problems"] = [str(exc)]
            else:
                context["result"] = result.as_dict()
                context["warnings"] = [str(w) for w in result.warnings]
    context["form"] = form
    return TemplateResponse(request, "admin/classes/import_roster.html", context)


def _import_for(request: HttpRequest, bundle: Path, name: str) -> Any:
    """Import as the signed-in person; a school admin may only import their own school."""
    only = None if access.is_platform_operator(request.user) else access.administered_school(request.user)
    return import_bundle(bundle, actor=request.user, source_name=name, school_only=only)  # type: ignore[arg-type]
