"""Who takes part in a class or a cohort now, and who of them is an adult: the one definition.

`messaging.policy` builds a room's readers and its state on these answers (`policy.members`); the
admin, the roster import and the provisioning services ask the same functions when they check an
enrollment. Nothing else decides it.

- A person is an adult by their own role (`User.role`), never by the role of an enrollment row: a
  student enrolled as an "aide" is still a student, and such a row is refused where it is written.
- Only people who can take part now count: enabled, not suspended, with an enrollment (or a cohort
  place) current on the school's date, and not holding the school admin role: whoever provisions the
  school does not read its rooms, whatever rows name them.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from classes.models import CohortMembership, CohortStaff, Enrollment, StaffRole, User

People = tuple[set[int], set[int]]  # everyone who takes part, and the adults among them


def is_adult(role: str) -> bool:
    """Is a person of this `User.role` an adult? Every role but student is."""
    return role != User.Role.STUDENT


def enrollment_role_misfit(person_role: str, enrollment_role: str) -> str | None:
    """Why an enrollment role does not fit a person of `person_role`, or None if it does.

    Students are enrolled as students; adults as teachers or aides, never as students (a room would
    otherwise count an adult where it needs a second adult, or the other way round)."""
    if enrollment_role not in Enrollment.Role.values:
        return f"{enrollment_role!r} is not an enrollment role."
    student = person_role == User.Role.STUDENT
    if student and enrollment_role != Enrollment.Role.STUDENT:
        return f"A student can only be enrolled as a student, not as {Enrollment.Role(enrollment_role).label.lower()}."
    if not student and enrollment_role == Enrollment.Role.STUDENT:
        return "A member of staff is enrolled as a teacher or an aide, not as a student."
    return None


def provisions(user_id: OuterRef | int) -> QuerySet[StaffRole]:
    """The school admin role that `user_id` holds, if any (an `Exists` operand, or a plain query)."""
    return StaffRole.objects.filter(role=StaffRole.Role.SCHOOL_ADMIN, active=True).filter(Q(user_id=user_id))


def takes_part(prefix: str = "") -> Q:
    """People (through `prefix`, such as "user__") who can take part now: enabled and not suspended."""
    return Q(**{f"{prefix}enabled": True, f"{prefix}suspended": False})


def current(enrollments: QuerySet[Enrollment], today: date) -> QuerySet[Enrollment]:
    """The enrollments in force on `today`: active, begun, not ended."""
    return (
        enrollments.filter(active=True)
        .filter(Q(begin_date__isnull=True) | Q(begin_date__lte=today))
        .filter(Q(end_date__isnull=True) | Q(end_date__gte=today))
    )


def taking_part(rows: QuerySet[Enrollment] | QuerySet[CohortMembership] | QuerySet[CohortStaff]) -> Any:
    """The rows (enrollments, cohort places, cohort staff) of people who can take part now."""
    return rows.filter(takes_part("user__")).exclude(Exists(provisions(OuterRef("user_id"))))


def _people(rows: Iterable[tuple[int, int, str]]) -> dict[int, People]:
    """(owner id, person id, person's role) rows as everyone by owner, and the adults among them."""
    found: dict[int, People] = defaultdict(lambda: (set(), set()))
    for owner_id, user_id, role in rows:
        everyone, adults = found[owner_id]
        everyone.add(user_id)
        if is_adult(role):
            adults.add(user_id)
    return found


def class_people(class_ids: Iterable[int], today: date) -> dict[int, People]:
    """Everyone who takes part in each of these classes on `today`, and the adults among them."""
    enrolled = taking_part(current(Enrollment.objects.filter(school_class_id__in=list(class_ids)), today))
    return _people(enrolled.values_list("school_class_id", "user_id", "user__role"))


def cohort_people(cohort_ids: Iterable[int]) -> dict[int, People]:
    """Everyone who takes part in each of these cohorts' rooms now (its current students and its
    staff), and the adults among them."""
    ids = list(cohort_ids)
    places = taking_part(CohortMembership.objects.filter(cohort_id__in=ids, end_date__isnull=True))
    staff = taking_part(CohortStaff.objects.filter(cohort_id__in=ids, active=True))
    columns = ("cohort_id", "user_id", "user__role")
    return _people(itertools.chain(places.values_list(*columns), staff.values_list(*columns)))
