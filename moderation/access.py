"""Who sees and handles which case: the only way to fetch a case for a person.

A case waits at one level: 1, the room's teachers; 2, the moderators whose scope covers the room;
3, the safeguarding lead. The people of its level and of every level above it see it and can act
on it; those of its level are alerted. A case about a member of staff (`staff_conduct`) skips
the levels: it goes to the first of these who is there and is not its subject: the person the
school names for allegations against staff, the safeguarding lead(s), the moderators of the whole
school. Nobody ever sees a case about themselves (invariant 6), and no case is left with nobody.
A case that exists but is not someone's gets the same answer as one that does not exist.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django_scopes import scopes_disabled

from classes.models import StaffRole, User
from messaging import policy
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


def visible_cases(user: Any) -> QuerySet[Case]:
    """Every case `user` may see and act on."""
    if not getattr(user, "is_authenticated", False) or not user.is_active or user.school_id is None:
        return Case.objects.none()
    roles = _roles(user)
    allowed = _conduct_cases_of(user)
    if StaffRole.Role.SAFEGUARDING_LEAD in roles:
        allowed |= Q(staff_conduct=False)
    else:
        if StaffRole.Role.MODERATOR in roles:
            allowed |= Q(staff_conduct=False, level__lte=2, room__in=policy.readable_rooms(user).values("pk"))
        allowed |= Q(staff_conduct=False, level=1, room__in=policy.taught_rooms(user).values("pk"))
    with scopes_disabled():
        return Case.objects.filter(school_id=user.school_id).exclude(subject_id=user.pk).filter(allowed)


def case_for(user: Any, case_id: Any, *, lock: bool = False) -> Case:
    """The case, if `user` may see it; with `lock`, its row is locked for the transaction (and the
    check is made on the locked row, so a case that moved away meanwhile is not acted on)."""
    pk = policy.as_id(case_id)
    if pk is None:
        raise CaseNotFound
    with scopes_disabled():
        query = visible_cases(user).select_related(
            "room__school", "room__school_class", "room__cohort", "message__author", "subject"
        )
        if lock:
            query = query.select_for_update(of=("self",))
        case = query.filter(pk=pk).first()
    if case is None:
        raise CaseNotFound
    return case


def staff_with_role(school_id: int, role: str) -> list[User]:
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
            people = policy.room_teachers(room)
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
                for moderator in staff_with_role(case.school_id, StaffRole.Role.MODERATOR)
                if moderator.pk not in restricted or policy.readable_rooms(moderator).filter(pk=room.pk).exists()
            }
        else:
            people = {lead.pk for lead in staff_with_role(case.school_id, StaffRole.Role.SAFEGUARDING_LEAD)}
    return people - {case.subject_id}


def _conduct_tiers(school_id: int) -> list[set[int]]:
    """Who handles cases about staff, in order: the named allegations contact, the safeguarding
    lead(s), the moderators of the whole school (each only while their account is active)."""
    contact = settings_for(school_id).allegations_contact_id
    with scopes_disabled():
        named = set(
            User.objects.filter(pk=contact, school_id=school_id, enabled=True, suspended=False).values_list(
                "pk", flat=True
            )
            if contact is not None
            else []
        )
        restricted = set(
            StaffRole.objects.filter(
                school_id=school_id, role=StaffRole.Role.MODERATOR, active=True, cohorts__isnull=False
            ).values_list("user_id", flat=True)
        )
    leads = {lead.pk for lead in staff_with_role(school_id, StaffRole.Role.SAFEGUARDING_LEAD)}
    whole_school = {m.pk for m in staff_with_role(school_id, StaffRole.Role.MODERATOR)} - restricted
    return [named, leads, whole_school]


def conduct_handlers(case: Case) -> set[int]:
    """The first tier with someone in it once the case's subject is left out."""
    for tier in _conduct_tiers(case.school_id):
        if people := tier - {case.subject_id}:
            return people
    return set()


def _conduct_cases_of(user: Any) -> Q:
    """The cases about staff that `user` handles, as a filter (the same rule as `conduct_handlers`):
    those of their tier, unless a tier before it has someone who is not the case's subject."""
    tiers = _conduct_tiers(user.school_id)
    for place, tier in enumerate(tiers):
        if user.pk in tier:
            before = set().union(*tiers[:place])
            if not before:
                return Q(staff_conduct=True)
            if len(before) == 1:
                return Q(staff_conduct=True, subject_id=next(iter(before)))
            break
    return Q(pk__in=[])


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
        case.staff_conduct and user.pk in conduct_handlers(case)
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
        or any(user.pk in tier for tier in _conduct_tiers(user.school_id))
        or policy.taught_rooms(user).exists()
    )
