"""Who sees and handles which case: the only way to fetch a case for a person.

A case waits at one level: 1, the room's teachers; 2, the moderators whose scope covers the room;
3, the safeguarding lead. The people of its level and of every level above it see it and can act
on it; those of its level are alerted. A case about a member of staff (`staff_conduct`) skips
the levels: only the person the school names for allegations against staff (or, if it names
nobody, the safeguarding lead) sees it. Nobody ever sees a case about themselves (invariant 6).
A case that exists but is not someone's gets the same answer as one that does not exist.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django_scopes import scopes_disabled

from classes.models import CohortStaff, Enrollment, StaffRole, User
from messaging import policy
from messaging.models import Room
from moderation.models import Case, ModerationSettings


class CaseNotFound(Exception):
    """No such case, or not one this person may see: the same answer for both."""


def settings_for(school_id: int) -> ModerationSettings:
    """The school's moderation settings, or the defaults if it has saved none."""
    with scopes_disabled():
        found = ModerationSettings.objects.filter(school_id=school_id).first()
    return found if found is not None else ModerationSettings(school_id=school_id)


def _roles(user: Any) -> set[str]:
    with scopes_disabled():
        return set(
            StaffRole.objects.filter(school_id=user.school_id, user_id=user.pk, active=True).values_list(
                "role", flat=True
            )
        )


def _handles_conduct(user: Any, roles: set[str], settings: ModerationSettings) -> bool:
    if settings.allegations_contact_id is not None:
        return bool(settings.allegations_contact_id == user.pk)
    return StaffRole.Role.SAFEGUARDING_LEAD in roles


def taught_rooms(user: Any) -> QuerySet[Room]:
    """The rooms whose teacher `user` is: their classes' rooms (as teacher) and their cohorts' rooms."""
    with scopes_disabled():
        classes = Enrollment.objects.filter(user_id=user.pk, active=True, role=Enrollment.Role.TEACHER).values(
            "school_class_id"
        )
        cohorts = CohortStaff.objects.filter(user_id=user.pk, active=True).values("cohort_id")
        return Room.objects.filter(school_id=user.school_id).filter(
            Q(school_class_id__in=classes) | Q(cohort_id__in=cohorts)
        )


def visible_cases(user: Any) -> QuerySet[Case]:
    """Every case `user` may see and act on."""
    if not getattr(user, "is_authenticated", False) or not user.is_active or user.school_id is None:
        return Case.objects.none()
    roles = _roles(user)
    settings = settings_for(user.school_id)
    allowed = Q(pk__in=[])
    if _handles_conduct(user, roles, settings):
        allowed |= Q(staff_conduct=True)
    if StaffRole.Role.SAFEGUARDING_LEAD in roles:
        allowed |= Q(staff_conduct=False)
    else:
        if StaffRole.Role.MODERATOR in roles:
            allowed |= Q(staff_conduct=False, level__lte=2, room__in=policy.readable_rooms(user).values("pk"))
        allowed |= Q(staff_conduct=False, level=1, room__in=taught_rooms(user).values("pk"))
    with scopes_disabled():
        return Case.objects.filter(school_id=user.school_id).exclude(subject_id=user.pk).filter(allowed)


def case_for(user: Any, case_id: Any) -> Case:
    pk = policy.as_id(case_id)
    if pk is None:
        raise CaseNotFound
    with scopes_disabled():
        case = (
            visible_cases(user)
            .select_related("room__school", "room__school_class", "room__cohort", "message__author", "subject")
            .filter(pk=pk)
            .first()
        )
    if case is None:
        raise CaseNotFound
    return case


def _staff_with_role(school_id: int, role: str) -> list[User]:
    with scopes_disabled():
        return list(
            User.objects.filter(
                school_id=school_id,
                enabled=True,
                suspended=False,
                staff_roles__role=role,
                staff_roles__active=True,
            ).distinct()
        )


def level_handlers(case: Case, level: int) -> set[int]:
    """Who handles a case (not about staff) at `level`."""
    room = case.room
    with scopes_disabled():
        if level == 1:
            teachers = set(
                Enrollment.objects.filter(
                    school_class_id=room.school_class_id, active=True, role=Enrollment.Role.TEACHER
                ).values_list("user_id", flat=True)
                if room.school_class_id is not None
                else CohortStaff.objects.filter(cohort_id=room.owner_id, active=True).values_list("user_id", flat=True)
            )
            people = set(
                User.objects.filter(pk__in=teachers, enabled=True, suspended=False).values_list("pk", flat=True)
            )
        elif level == 2:
            # A moderator of the whole school covers every room; one of some cohorts, the rooms the
            # policy gives them (asked only for those).
            restricted = set(
                StaffRole.objects.filter(
                    school_id=case.school_id, role=StaffRole.Role.MODERATOR, active=True, cohorts__isnull=False
                ).values_list("user_id", flat=True)
            )
            people = {
                moderator.pk
                for moderator in _staff_with_role(case.school_id, StaffRole.Role.MODERATOR)
                if moderator.pk not in restricted or policy.readable_rooms(moderator).filter(pk=room.pk).exists()
            }
        else:
            people = {lead.pk for lead in _staff_with_role(case.school_id, StaffRole.Role.SAFEGUARDING_LEAD)}
    return people - {case.subject_id}


def conduct_handlers(case: Case) -> set[int]:
    settings = settings_for(case.school_id)
    if settings.allegations_contact_id is not None:
        with scopes_disabled():
            named = User.objects.filter(pk=settings.allegations_contact_id, enabled=True, suspended=False).exists()
        people = {settings.allegations_contact_id} if named else set()
    else:
        people = {lead.pk for lead in _staff_with_role(case.school_id, StaffRole.Role.SAFEGUARDING_LEAD)}
    return people - {case.subject_id}


def alerted(case: Case) -> set[int]:
    """Who must acknowledge the case now: the people of its level."""
    return conduct_handlers(case) if case.staff_conduct else level_handlers(case, case.level)


def audience(case: Case) -> set[int]:
    """Everyone who sees the case: the people of its level and of the levels above."""
    if case.staff_conduct:
        return conduct_handlers(case)
    people: set[int] = set()
    for level in range(case.level, 4):
        people |= level_handlers(case, level)
    return people


def may_suspend(user: Any, case: Case) -> bool:
    """Suspending an account is for moderators and above, not for a class teacher alone."""
    roles = _roles(user)
    return bool(roles & {StaffRole.Role.MODERATOR, StaffRole.Role.SAFEGUARDING_LEAD}) or (
        case.staff_conduct and _handles_conduct(user, roles, settings_for(case.school_id))
    )


def sees_cases(user: Any) -> bool:
    """Does `user` have a case queue at all (teachers, moderators, the safeguarding lead)?"""
    if not getattr(user, "is_authenticated", False) or not user.is_active or user.school_id is None:
        return False
    if user.role == User.Role.STUDENT:
        return False
    roles = _roles(user)
    return bool(
        roles & {StaffRole.Role.MODERATOR, StaffRole.Role.SAFEGUARDING_LEAD}
        or _handles_conduct(user, roles, settings_for(user.school_id))
        or taught_rooms(user).exists()
    )
