"""Nothing of one school is visible from another, and a query that forgets the school fails."""

from __future__ import annotations

import pytest
from django.db.models import Model
from django.test import Client
from django_scopes import ScopeError, scope

from audit.models import AuditEvent
from audit.services import record
from classes.access import school_scope
from classes.models import AcademicSession, Cohort, CohortMembership, Enrollment, School, SchoolClass, StaffRole
from messaging.models import Room
from tests.conftest import SchoolPeople

pytestmark = pytest.mark.django_db

SCOPED: list[type[Model]] = [
    School,
    AcademicSession,
    Cohort,
    CohortMembership,
    SchoolClass,
    Enrollment,
    StaffRole,
    Room,
]


@pytest.mark.parametrize("model", SCOPED, ids=lambda m: m.__name__)
def test_a_query_without_a_school_fails(model: type[Model], school_a: SchoolPeople) -> None:
    with pytest.raises(ScopeError):
        list(model.objects.all())  # type: ignore[attr-defined]
    with pytest.raises(ScopeError):
        model.objects.filter(pk=1).exists()  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", [*SCOPED, AuditEvent], ids=lambda m: m.__name__)
def test_school_a_sees_nothing_of_school_b(model: type[Model], school_a: SchoolPeople, school_b: SchoolPeople) -> None:
    from django.db import transaction

    with transaction.atomic():
        record("test.a", school_id=school_a.school.pk)
        record("test.b", school_id=school_b.school.pk)
    with school_scope(school_a.school):
        rows = list(model.objects.all())  # type: ignore[attr-defined]
        assert rows, "the fixture should give school A rows of every kind"
        school_ids = {row.pk if model is School else row.school_id for row in rows}
        assert school_ids == {school_a.school.pk}
        assert not model.objects.filter(pk__in=[r.pk for r in model._base_manager.all()]).exclude(  # type: ignore[attr-defined]
            pk__in=[r.pk for r in rows]
        )


def test_related_managers_are_scoped_too(school_a: SchoolPeople, school_b: SchoolPeople) -> None:
    with school_scope(school_a.school):
        assert set(school_a.cohort.memberships.values_list("user_id", flat=True)) == {
            school_a.student.pk,
            school_a.other_student.pk,
        }
        # School B's cohort, reached from A's scope, shows none of B's members.
        assert not school_b.cohort.memberships.exists()


def test_an_empty_scope_means_no_school(school_a: SchoolPeople) -> None:
    with scope(school=[]):
        assert not SchoolClass.objects.exists()
        assert not School.objects.exists()


def test_the_request_scope_follows_the_signed_in_person(
    client: Client, school_a: SchoolPeople, school_b: SchoolPeople
) -> None:
    client.login(username=school_a.admin.username, password="pw")
    response = client.get("/admin/classes/schoolclass/")
    assert response.status_code == 200
    titles = {c.title for c in response.context["cl"].result_list}
    assert titles == {school_a.school_class.title, school_a.other_class.title}


def _school_owned(*app_labels: str) -> list[type[Model]]:
    from django.apps import apps

    return [
        model
        for label in app_labels
        for model in apps.get_app_config(label).get_models()
        if any(field.name == "school" for field in model._meta.get_fields())
    ]


@pytest.mark.parametrize("model", _school_owned("messaging", "moderation"), ids=lambda m: m.__name__)
def test_every_school_owned_model_of_messaging_and_moderation_is_scoped(model: type[Model]) -> None:
    """Messages, mutes, cases, reports, notes, suspensions, rules, settings, access records: a query that
    forgets the school fails."""
    with pytest.raises(ScopeError):
        list(model.objects.all())  # type: ignore[attr-defined]
