"""Provisioning services refuse what a school would not want, and record what they do."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from audit.models import AuditEvent
from classes.models import Enrollment, StaffRole, User
from classes.services import ProvisioningError, change_school_settings, end_enrollment, enroll, grant_role, revoke_role
from tests.conftest import SchoolPeople

pytestmark = pytest.mark.django_db


def test_enrolling_twice_is_refused(school_a: SchoolPeople) -> None:
    with scopes_disabled(), pytest.raises(ProvisioningError, match="already enrolled"):
        enroll(actor=school_a.admin, school_class=school_a.school_class, user=school_a.student, role="student")


def test_enrolling_across_schools_is_refused(school_a: SchoolPeople, school_b: SchoolPeople) -> None:
    with scopes_disabled(), pytest.raises(ProvisioningError, match="not a member"):
        enroll(actor=school_a.admin, school_class=school_a.school_class, user=school_b.student, role="student")


def test_an_ended_enrollment_can_start_again_and_both_are_recorded(school_a: SchoolPeople) -> None:
    with scopes_disabled():
        current = Enrollment.objects.get(user=school_a.student, school_class=school_a.school_class)
        end_enrollment(actor=school_a.admin, enrollment=current, reason="moved set")
        enroll(actor=school_a.admin, school_class=school_a.school_class, user=school_a.student, role="student")
        actions = list(AuditEvent.objects.filter(actor=school_a.admin).order_by("seq").values_list("action", flat=True))
    assert actions == ["enrollment.ended", "enrollment.created"]


@pytest.mark.parametrize(
    ("who", "role", "message"),
    [("student", "moderator", "Students cannot hold staff roles"), ("teacher", "headteacher", "not a staff role")],
)
def test_bad_roles_are_refused(school_a: SchoolPeople, who: str, role: str, message: str) -> None:
    with scopes_disabled(), pytest.raises(ProvisioningError, match=message):
        grant_role(actor=school_a.admin, school=school_a.school, user=getattr(school_a, who), role=role)


def test_a_moderator_looks_after_their_own_schools_cohorts_only(school_a: SchoolPeople, school_b: SchoolPeople) -> None:
    with scopes_disabled(), pytest.raises(ProvisioningError, match="their own school"):
        grant_role(
            actor=school_a.admin,
            school=school_a.school,
            user=school_a.teacher,
            role=StaffRole.Role.MODERATOR,
            cohorts=[school_b.cohort],
        )


def test_granting_and_revoking_twice_records_once(school_a: SchoolPeople, operator: User) -> None:
    with scopes_disabled():
        role = grant_role(actor=operator, school=school_a.school, user=school_a.aide, role=StaffRole.Role.MODERATOR)
        grant_role(actor=operator, school=school_a.school, user=school_a.aide, role=StaffRole.Role.MODERATOR)
        revoke_role(actor=operator, staff_role=role)
        revoke_role(actor=operator, staff_role=role)
        actions = list(AuditEvent.objects.filter(target_id=str(role.pk)).values_list("action", flat=True))
    assert sorted(actions) == ["staff_role.granted", "staff_role.revoked"]


def test_unknown_school_settings_are_refused(school_a: SchoolPeople) -> None:
    with scopes_disabled(), pytest.raises(ProvisioningError, match="Unknown school setting"):
        change_school_settings(actor=school_a.admin, school=school_a.school, quiet_hours="never")


def test_a_school_admin_is_never_also_pastoral(school_a: SchoolPeople, operator: User) -> None:
    with scopes_disabled():
        with pytest.raises(ProvisioningError, match="cannot also be"):
            grant_role(
                actor=operator, school=school_a.school, user=school_a.admin, role=StaffRole.Role.SAFEGUARDING_LEAD
            )
        with pytest.raises(ProvisioningError, match="cannot also be"):
            grant_role(
                actor=operator, school=school_a.school, user=school_a.moderator, role=StaffRole.Role.SCHOOL_ADMIN
            )


def test_nobody_grants_themselves_a_role(school_a: SchoolPeople) -> None:
    with scopes_disabled(), pytest.raises(ProvisioningError, match="role of their own"):
        grant_role(actor=school_a.admin, school=school_a.school, user=school_a.admin, role=StaffRole.Role.TEACHER)


@pytest.mark.parametrize(
    "role", [StaffRole.Role.MODERATOR, StaffRole.Role.SAFEGUARDING_LEAD, StaffRole.Role.SCHOOL_ADMIN]
)
def test_only_an_operator_appoints_who_reads_or_provisions(school_a: SchoolPeople, role: str) -> None:
    with scopes_disabled(), pytest.raises(ProvisioningError, match="Only a platform operator"):
        grant_role(actor=school_a.admin, school=school_a.school, user=school_a.teacher, role=role)


def test_attaching_staff_to_a_cohort_is_audited_once(school_a: SchoolPeople) -> None:
    from classes.services import attach_to_cohort

    with scopes_disabled():
        attach_to_cohort(actor=school_a.admin, cohort=school_a.cohort, user=school_a.teacher)
        attach_to_cohort(actor=school_a.admin, cohort=school_a.cohort, user=school_a.teacher)
        assert AuditEvent.objects.filter(action="cohortstaff.created", actor=school_a.admin).count() == 1
        with pytest.raises(ProvisioningError, match="not a member of staff"):
            attach_to_cohort(actor=school_a.admin, cohort=school_a.cohort, user=school_a.student)
