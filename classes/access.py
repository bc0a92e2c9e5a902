"""Who may do what at the level of a school: the roles a person holds.

This is the one place that reads staff roles for authorization; views, the
admin and services ask it instead of checking roles themselves. (Rooms,
messages and cases get their own policy module in messaging/ and moderation/,
built on this one.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django_scopes import scope, scopes_disabled

from classes.models import School, StaffRole, User


def active_roles(user: Any) -> set[str]:
    """The staff roles `user` holds in their own school."""
    if not getattr(user, "is_authenticated", False) or not user.is_active or user.school_id is None:
        return set()
    with scopes_disabled():
        return set(
            StaffRole.objects.filter(school_id=user.school_id, user_id=user.pk, active=True).values_list(
                "role", flat=True
            )
        )


def is_platform_operator(user: Any) -> bool:
    return bool(
        getattr(user, "is_authenticated", False) and user.is_active and user.is_superuser and user.school_id is None
    )


def administered_school(user: Any) -> School | None:
    """The school `user` provisions as its school admin, if any."""
    if StaffRole.Role.SCHOOL_ADMIN not in active_roles(user):
        return None
    with scopes_disabled():
        return School.objects.filter(pk=user.school_id, active=True).first()


def may_provision(user: Any, school: School | None = None) -> bool:
    """May `user` provision `school` (or, without one, some school)?"""
    if is_platform_operator(user):
        return True
    administered = administered_school(user)
    return administered is not None and (school is None or school.pk == administered.pk)


PRIVILEGED_ROLES = {StaffRole.Role.SCHOOL_ADMIN, StaffRole.Role.MODERATOR, StaffRole.Role.SAFEGUARDING_LEAD}


def may_manage_account(user: Any, person: Any) -> bool:
    """May `user` change `person`'s account (details, password)?

    School admins manage the accounts of their school, except those that watch
    over it (admins, moderators, the safeguarding lead): taking one of those
    over would undo the separation of duties, so only a platform operator may.
    """
    if is_platform_operator(user):
        return True
    school = administered_school(user)
    if school is None or person.school_id != school.pk:
        return False
    with scopes_disabled():
        privileged = StaffRole.objects.filter(user_id=person.pk, active=True, role__in=sorted(PRIVILEGED_ROLES))
        return not privileged.exists()


def people_of(school: School) -> Any:
    """The people of one school (User has no scoped manager; see its docstring)."""
    return User.objects.filter(school=school)


@contextmanager
def school_scope(school: School | int) -> Iterator[None]:
    """Limit every scoped query to one school."""
    school_id = school if isinstance(school, int) else school.pk
    with scope(school=[school_id]):
        yield
