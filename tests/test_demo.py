"""`seed_demo` makes a usable demo school, and running it again changes nothing."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django_scopes import scopes_disabled

from audit.models import AuditEvent
from audit.services import chains, verify_chain
from classes.models import Cohort, Enrollment, School, SchoolClass, StaffRole, User
from frontend.management.commands.seed_demo import DEMO_PASSWORD

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", "--force", stdout=out)
    return out.getvalue()


def test_the_demo_school_has_what_the_demo_needs() -> None:
    output = seed()
    with scopes_disabled():
        school = School.objects.get()
        assert Cohort.objects.filter(school=school).count() == 2
        assert SchoolClass.objects.filter(school=school).count() == 6
        assert User.objects.filter(school=school, role=User.Role.STUDENT).count() == 60
        roles = set(StaffRole.objects.filter(school=school, active=True).values_list("role", flat=True))
        assert roles == {"teacher", "moderator", "safeguarding_lead", "school_admin"}
        assert Enrollment.objects.filter(user__username="demo.teacher", active=True).exists()
    for role in ("student", "teacher", "moderator", "safeguarding lead", "school admin", "platform operator"):
        assert role in output
    assert DEMO_PASSWORD in output


def test_seeding_twice_changes_nothing() -> None:
    seed()
    with scopes_disabled():
        counts = {model.__name__: model._base_manager.count() for model in (User, Enrollment, SchoolClass, StaffRole)}
        events = AuditEvent.all_chains.count()
    seed()
    with scopes_disabled():
        assert {
            model.__name__: model._base_manager.count() for model in (User, Enrollment, SchoolClass, StaffRole)
        } == counts
        # The second run records only that the roster was imported again.
        assert list(AuditEvent.all_chains.filter(pk__gt=0).order_by("-id").values_list("action", flat=True)[:1]) == [
            "roster.imported"
        ]
        assert AuditEvent.all_chains.count() == events + 1
    assert all(verify_chain(name).intact for name in chains())


@pytest.mark.parametrize("username", ["demo.teacher", "demo.admin", "demo.safeguarding", "demo.operator"])
def test_the_printed_logins_work(client: Client, username: str) -> None:
    seed()
    assert client.login(username=username, password=DEMO_PASSWORD)


def test_the_demo_admin_can_provision(client: Client) -> None:
    seed()
    client.login(username="demo.admin", password=DEMO_PASSWORD)
    assert client.get("/admin/classes/schoolclass/").status_code == 200


def test_the_demo_is_not_seeded_in_production() -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="only with DEBUG on"):
        call_command("seed_demo")
    with scopes_disabled():
        assert not User.objects.filter(username="demo.operator").exists()
