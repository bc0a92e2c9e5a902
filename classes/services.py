"""Provisioning actions: each one validates, then writes its change and its audit event in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.utils import timezone

from audit.services import Entry, audited, record, record_many
from classes import access, membership
from classes.models import (
    AcademicSession,
    Cohort,
    CohortMembership,
    CohortStaff,
    Enrollment,
    School,
    SchoolClass,
    StaffRole,
    User,
)
from classes.signals import (
    adult_added_by_hand,
    membership_changed,
    owners_changed,
    roster_changed,
    school_changed,
    sessions_ended,
)


class ProvisioningError(Exception):
    """An action that cannot be done as asked; the message says why."""


PASTORAL_ROLES = {StaffRole.Role.MODERATOR, StaffRole.Role.SAFEGUARDING_LEAD}


def _check_role_change(actor: User | None, user: User, role: str) -> None:
    """Who may give or take a role. `actor` None is the system itself (the roster import, the demo seed).

    Roles that read children's messages or provision the school are given and
    taken by a platform operator only: a school admin, who can set the passwords
    of their school's accounts, could otherwise hand one of those accounts (or
    their own) the safeguarding lead's reach.
    """
    if actor is None or access.is_platform_operator(actor):
        return
    if actor.pk == user.pk:
        raise ProvisioningError("Nobody can give or take a role of their own; ask another admin.")
    if role in access.PRIVILEGED_ROLES:
        raise ProvisioningError(
            "Only a platform operator can appoint or remove admins, moderators and safeguarding leads."
        )


# -- records edited in the admin's forms ------------------------------------------


def check_person_role(*, person_id: int | None, role: str) -> None:
    """A person's role changed in a form: it must still fit every place they hold in a room (an adult
    counts as an adult by their own role, so a student made a teacher would open rooms)."""
    if person_id is None:
        return
    stored = User.objects.filter(pk=person_id).values_list("role", flat=True).first()
    if stored is None or stored == role:
        return
    enrolled = Enrollment.objects.filter(user_id=person_id, active=True).values_list("role", flat=True)
    for enrollment_role in set(enrolled):
        misfit = membership.enrollment_role_misfit(role, enrollment_role)
        if misfit is not None:
            raise ProvisioningError(f"{misfit} End their enrollments first, or let the roster change them.")
    if membership.is_adult(role) and CohortMembership.objects.filter(user_id=person_id, end_date__isnull=True).exists():
        raise ProvisioningError("This person has a place in a year group as a student; end it first.")
    if not membership.is_adult(role):
        if CohortStaff.objects.filter(user_id=person_id, active=True).exists():
            raise ProvisioningError("This person is attached to a year group as staff; detach them first.")
        if StaffRole.objects.filter(user_id=person_id, active=True).exists():
            raise ProvisioningError("Students cannot hold staff roles; revoke their roles first.")


# Records with actions of their own, which the generic form path must never save.
OWN_ACTIONS = (Enrollment, CohortStaff, CohortMembership, StaffRole)


def save_provisioned(*, actor: User | None, obj: Any, action: str, fields: list[str]) -> None:
    """Save a record edited in a provisioning form and record `action` with the changed fields, in one transaction."""
    if isinstance(obj, OWN_ACTIONS):
        raise ProvisioningError(f"{type(obj).__name__} records are changed through their own actions.")
    if isinstance(obj, User):
        check_person_role(person_id=obj.pk, role=obj.role)
    with audited(obj.pk if isinstance(obj, School) else obj.school_id):
        obj.save()
        if isinstance(obj, SchoolClass | Cohort):
            roster_changed.send(sender=type(obj), school_ids={obj.school_id})
            owners_changed.send(
                sender=type(obj),
                class_ids={obj.pk} if isinstance(obj, SchoolClass) else set(),
                cohort_ids={obj.pk} if isinstance(obj, Cohort) else set(),
            )
        if isinstance(obj, User) and not obj.enabled:
            sessions_ended.send(sender=User, user_ids={obj.pk})  # their sockets close; their rooms are told
        elif isinstance(obj, User) and {"enabled", "role"} & set(fields):
            membership_changed.send(sender=User, user_ids={obj.pk})
        record(
            action,
            school_id=obj.pk if isinstance(obj, School) else obj.school_id,
            actor=actor,
            target=obj,
            target_label=obj.username if isinstance(obj, User) else None,
            payload={"fields": sorted(name for name in fields if "password" not in name), "via": "admin"},
        )


def _check_place(actor: User | None, user: User) -> None:
    """Who may be given a place in a room by hand: nobody themself, and no school admin (whoever
    provisions the school does not read its rooms; `classes.membership` would not count them anyway)."""
    if actor is not None and actor.pk == user.pk:
        raise ProvisioningError("Nobody can give themself a place in a room; ask another admin.")
    if membership.provisions(user.pk).exists():
        raise ProvisioningError(
            f"{user} is a school admin: whoever provisions the school does not take part in its rooms "
            "(give them a separate teaching account)."
        )


def check_cohort_staff(*, actor: User | None, cohort: Cohort, user: User) -> None:
    if user.school_id != cohort.school_id or not membership.is_adult(user.role):
        raise ProvisioningError(f"{user} is not a member of staff of {cohort.school}.")
    _check_place(actor, user)


def _tell_safeguarding_lead(actor: User | None, school_id: int, person: User, place: str) -> None:
    """An adult placed in a room by hand (not by the roster) is how a bad actor would get in."""
    if actor is not None and membership.is_adult(person.role):
        adult_added_by_hand.send(sender=User, school_id=school_id, actor=actor, person=person, place=place)


def attach_to_cohort(*, actor: User | None, cohort: Cohort, user: User) -> CohortStaff:
    """Attach a member of staff to a cohort (a head of year, a tutor), so they read and post in its room."""
    check_cohort_staff(actor=actor, cohort=cohort, user=user)
    with audited(cohort.school_id):
        staff, created = CohortStaff.objects.get_or_create(
            school_id=cohort.school_id, cohort=cohort, user=user, defaults={"active": True}
        )
        if not created and staff.active:
            return staff
        staff.active = True
        staff.save(update_fields=["active"])
        membership_changed.send(sender=CohortStaff, user_ids={user.pk})
        record(
            "cohortstaff.created" if created else "cohortstaff.updated",
            school_id=cohort.school_id,
            actor=actor,
            target=staff,
            target_label=user.username,
            payload={"cohort": cohort.graduation_year, "user": user.username},
        )
        _tell_safeguarding_lead(actor, cohort.school_id, user, f"the {cohort.name} year group room")
    return staff


def detach_from_cohort(*, actor: User | None, staff: CohortStaff) -> None:
    with audited(staff.school_id):
        if not staff.active:
            return
        staff.active = False
        staff.save(update_fields=["active"])
        membership_changed.send(sender=CohortStaff, user_ids={staff.user_id})
        record(
            "cohortstaff.updated",
            school_id=staff.school_id,
            actor=actor,
            target=staff,
            target_label=staff.user.username,
            payload={"cohort": staff.cohort.graduation_year, "user": staff.user.username, "active": False},
        )


# -- staff roles -----------------------------------------------------------


def grant_role(
    *, actor: User | None, school: School, user: User, role: str, cohorts: list[Cohort] | None = None
) -> StaffRole:
    if user.school_id != school.pk:
        raise ProvisioningError(f"{user} is not a member of {school}.")
    if not membership.is_adult(user.role):
        raise ProvisioningError("Students cannot hold staff roles.")
    if role not in StaffRole.Role.values:
        raise ProvisioningError(f"{role!r} is not a staff role.")
    cohort_list = cohorts or []
    if any(c.school_id != school.pk for c in cohort_list):
        raise ProvisioningError("A moderator can only look after cohorts of their own school.")
    _check_role_change(actor, user, role)
    held = set(
        StaffRole.objects.filter(school=school, user=user, active=True)
        .exclude(role=role)
        .values_list("role", flat=True)
    )
    if {role, *held} >= {StaffRole.Role.SCHOOL_ADMIN} and {role, *held} & PASTORAL_ROLES:
        # Separation of duties: who provisions the school does not read its children's messages.
        raise ProvisioningError("A school admin cannot also be a moderator or the safeguarding lead.")
    with audited(school.pk):
        staff_role, created = StaffRole.objects.get_or_create(
            school=school, user=user, role=role, defaults={"source": StaffRole.Source.MANUAL}
        )
        if (
            not created
            and staff_role.active
            and staff_role.source == StaffRole.Source.MANUAL
            and set(staff_role.cohorts.all()) == set(cohort_list)
        ):
            return staff_role
        # Given by hand, the role is no longer the roster's to take away.
        staff_role.active = True
        staff_role.source = StaffRole.Source.MANUAL
        staff_role.save(update_fields=["active", "source"])
        staff_role.cohorts.set(cohort_list)
        membership_changed.send(sender=StaffRole, user_ids={user.pk})
        record(
            "staff_role.granted",
            school_id=school.pk,
            actor=actor,
            target=staff_role,
            target_label=user.username,
            payload={"user": user.username, "role": role, "cohorts": [c.graduation_year for c in cohort_list]},
        )
    return staff_role


def revoke_role(*, actor: User | None, staff_role: StaffRole) -> None:
    _check_role_change(actor, staff_role.user, staff_role.role)
    with audited(staff_role.school_id):
        if not staff_role.active:
            return
        staff_role.active = False
        staff_role.save(update_fields=["active"])
        membership_changed.send(sender=StaffRole, user_ids={staff_role.user_id})
        record(
            "staff_role.revoked",
            school_id=staff_role.school_id,
            actor=actor,
            target=staff_role,
            target_label=staff_role.user.username,
            payload={"user": staff_role.user.username, "role": staff_role.role},
        )


# -- enrollments -----------------------------------------------------------


def check_enrollment(*, actor: User | None, school_class: SchoolClass, user: User, role: str) -> None:
    """Why `actor` may not enrol `user` in `school_class` as `role` (ProvisioningError), if they may not."""
    if user.school_id != school_class.school_id:
        raise ProvisioningError(f"{user} is not a member of the school of {school_class}.")
    misfit = membership.enrollment_role_misfit(user.role, role)
    if misfit is not None:
        raise ProvisioningError(misfit)
    if school_class.status != SchoolClass.Status.ACTIVE:
        raise ProvisioningError(f"{school_class} is archived.")
    _check_place(actor, user)


def enroll(*, actor: User | None, school_class: SchoolClass, user: User, role: str) -> Enrollment:
    check_enrollment(actor=actor, school_class=school_class, user=user, role=role)
    with audited(school_class.school_id):
        if Enrollment.objects.filter(school_class=school_class, user=user, active=True).exists():
            raise ProvisioningError(f"{user} is already enrolled in {school_class}.")
        enrollment = Enrollment.objects.create(
            school_id=school_class.school_id,
            school_class=school_class,
            user=user,
            role=role,
            begin_date=timezone.localdate(),
        )
        membership_changed.send(sender=Enrollment, user_ids={user.pk})
        record(
            "enrollment.created",
            school_id=school_class.school_id,
            actor=actor,
            target=enrollment,
            target_label=f"{user.username} in {school_class.title}",
            payload={"user": user.username, "class": school_class.title, "class_id": school_class.pk, "role": role},
        )
        _tell_safeguarding_lead(actor, school_class.school_id, user, f"the class room of {school_class.title}")
    return enrollment


def end_enrollment(*, actor: User | None, enrollment: Enrollment, reason: str = "") -> None:
    with audited(enrollment.school_id):
        if not enrollment.active:
            return
        enrollment.active = False
        enrollment.end_date = timezone.localdate()
        enrollment.save(update_fields=["active", "end_date"])
        membership_changed.send(sender=Enrollment, user_ids={enrollment.user_id})
        record(
            "enrollment.ended",
            school_id=enrollment.school_id,
            actor=actor,
            target=enrollment,
            payload={"reason": reason, "user_id": enrollment.user_id, "class_id": enrollment.school_class_id},
        )


# -- school settings ----------------------------------------------------------

SCHOOL_SETTINGS = (
    "name",
    "time_zone",
    "final_grade",
    "alumni_keep_access",
    "class_rooms_start_open",
    "quiet_hours_start",
    "quiet_hours_end",
    "edit_window_minutes",
    "under_13_needs_consent",
    "sign_in_message",
)


def change_school_settings(*, actor: User | None, school: School, **values: Any) -> list[str]:
    unknown = set(values) - set(SCHOOL_SETTINGS)
    if unknown:
        raise ProvisioningError(f"Unknown school setting(s): {', '.join(sorted(unknown))}.")
    with audited(school.pk):
        current = School.objects.select_for_update().get(pk=school.pk)
        changed = [name for name, value in values.items() if getattr(current, name) != value]
        if not changed:
            return []
        old = {name: getattr(current, name) for name in changed}
        for name in changed:
            setattr(current, name, values[name])
        current.full_clean()
        current.save(update_fields=changed)
        school_changed.send(sender=School, school_id=school.pk)
        record(
            "school.settings_changed",
            school_id=school.pk,
            actor=actor,
            target=current,
            payload={"old": old, "new": {name: values[name] for name in changed}},
        )
    for name in changed:
        setattr(school, name, values[name])
    return changed


# -- year end ----------------------------------------------------------------


@dataclass(frozen=True)
class YearClosed:
    school_year: int
    graduated_cohort: int | None
    graduates: int
    alumni_keep_access: bool
    classes_archived: int
    enrollments_ended: int
    memberships_ended: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def current_school_year(school: School, today: date) -> AcademicSession | None:
    """The open school year that has started by `today` (the latest one, if several)."""
    return (
        AcademicSession.objects.filter(
            school=school, kind=AcademicSession.Kind.SCHOOL_YEAR, active=True, closed=False, start_date__lte=today
        )
        .order_by("-start_date")
        .first()
    )


CLOSING_WINDOW = timedelta(weeks=8)


def school_today(school: School) -> date:
    """Today's date where the school is."""
    return timezone.localtime(timezone.now(), ZoneInfo(school.time_zone)).date()


def close_year(*, actor: User | None, school: School, today: date | None = None, early: bool = False) -> YearClosed:
    """Graduate the final-year cohort, archive the year's classes and end their enrollments.

    One audited event records everything it did. The next year's roster is
    imported afterwards. A year can be closed from eight weeks before its end
    (`early` lifts that guard against closing the wrong year by mistake).
    """
    today = today or school_today(school)
    with audited(school.pk):
        school = School.objects.select_for_update().get(pk=school.pk)
        year = current_school_year(school, today)
        if year is None:
            raise ProvisioningError(f"{school} has no open school year that has started by {today:%Y-%m-%d}.")
        if not early and today < year.end_date - CLOSING_WINDOW:
            raise ProvisioningError(
                f"The {year.title} school year ends on {year.end_date:%Y-%m-%d}; it can be closed from "
                f"{year.end_date - CLOSING_WINDOW:%Y-%m-%d} (or earlier on purpose, with --early)."
            )
        cohort = Cohort.objects.filter(
            school=school, graduation_year=year.school_year, status=Cohort.Status.ACTIVE
        ).first()
        graduates = memberships_ended = 0
        if cohort is not None:
            cohort.status = Cohort.Status.GRADUATED
            cohort.graduated_on = today
            cohort.save(update_fields=["status", "graduated_on"])
            current = CohortMembership.objects.filter(cohort=cohort, end_date__isnull=True)
            graduates = current.count()
            if not school.alumni_keep_access:
                memberships_ended = current.update(end_date=today)
        # The year's classes: those taught in terms that end by the end of the
        # year, and those with no term at all. Next year's classes stay.
        year_sessions = AcademicSession.objects.filter(school=school, end_date__lte=year.end_date)
        later = AcademicSession.objects.filter(school=school, end_date__gt=year.end_date)
        classes = (
            SchoolClass.objects.filter(school=school, status=SchoolClass.Status.ACTIVE)
            .exclude(terms__in=later)
            .filter(terms__in=year_sessions)
            .distinct()
        )
        untermed = SchoolClass.objects.filter(school=school, status=SchoolClass.Status.ACTIVE, terms__isnull=True)
        class_ids = set(classes.values_list("pk", flat=True)) | set(untermed.values_list("pk", flat=True))
        classes_archived = SchoolClass.objects.filter(pk__in=class_ids).update(
            status=SchoolClass.Status.ARCHIVED, archived_on=today
        )
        enrollments_ended = Enrollment.objects.filter(school_class_id__in=class_ids, active=True).update(
            active=False, end_date=today
        )
        AcademicSession.objects.filter(pk=year.pk).update(closed=True)
        AcademicSession.objects.filter(parent=year).update(closed=True)
        result = YearClosed(
            school_year=year.school_year,
            graduated_cohort=cohort.graduation_year if cohort else None,
            graduates=graduates,
            alumni_keep_access=school.alumni_keep_access,
            classes_archived=classes_archived,
            enrollments_ended=enrollments_ended,
            memberships_ended=memberships_ended,
        )
        roster_changed.send(sender=YearClosed, school_ids={school.pk})
        owners_changed.send(
            sender=YearClosed, class_ids=class_ids, cohort_ids={cohort.pk} if cohort is not None else set()
        )
        affected = set(Enrollment.objects.filter(school_class_id__in=class_ids).values_list("user_id", flat=True))
        if cohort is not None:
            affected |= set(CohortMembership.objects.filter(cohort=cohort).values_list("user_id", flat=True))
        membership_changed.send(sender=YearClosed, user_ids=affected)
        record_many(
            [Entry.about("school_year.closed", year, result.as_dict(), label=year.title)],
            school_id=school.pk,
            actor=actor,
        )
    return result
