"""Importing a OneRoster bundle: the whole bundle is checked, then written in one transaction.

The import is idempotent: it compares every row with what the database holds
and writes only differences, so the same bundle twice changes nothing the
second time. A bulk file is the complete truth for the schools in the bundle:
what disappeared from it is deactivated (people disabled, classes archived,
enrollments ended), never deleted, and nothing of a school outside the bundle
is touched. Delta files change only the rows they list (`tobedeleted` rows are
deactivated).

Every enrollment, role, membership and person change, and the import itself,
is written to the audit log of the school it belongs to, in the same
transaction.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.db.models import CharField, Model, Value
from django.db.models.functions import Cast, Concat, Lower
from django.utils import timezone
from django_scopes import scopes_disabled

from audit.services import Entry, record_many
from classes import membership
from classes.models import (
    AcademicSession,
    Cohort,
    CohortMembership,
    Enrollment,
    Organisation,
    School,
    SchoolClass,
    StaffRole,
    User,
)
from classes.oneroster import (
    ENROLLMENT_ROLES,
    IMPORTED_USER_ROLES,
    Bundle,
    Problem,
    Row,
    parse_bool,
    parse_cohort,
    parse_date,
    parse_grade,
    read_bundle,
    school_of,
    split_ids,
)
from classes.signals import membership_changed, owners_changed, roster_changed, sessions_ended
from commonroom.db import insert_rows, values_where_in

logger = logging.getLogger(__name__)

ENTITIES = ("schools", "sessions", "cohorts", "classes", "users", "enrollments", "cohort_memberships", "staff_roles")
KINDS = ("created", "updated", "deactivated", "unchanged")
BATCH = 2000

Progress = Callable[[str], None]


class InvalidBundle(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"the bundle has {len(problems)} problem(s)")
        self.problems = problems


@dataclass
class ImportResult:
    counts: dict[str, dict[str, int]] = field(default_factory=lambda: {e: dict.fromkeys(KINDS, 0) for e in ENTITIES})
    warnings: list[Problem] = field(default_factory=list)
    school_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.counts, "warnings": [str(w) for w in self.warnings]}

    @property
    def changed(self) -> bool:
        return any(c["created"] or c["updated"] or c["deactivated"] for c in self.counts.values())


def _known_ids() -> Callable[[str, str], bool]:
    """Which sourcedIds the database already has, loaded once per entity."""
    loaded: dict[str, set[str]] = {}
    sources: dict[str, Callable[[], Iterable[str | None]]] = {
        "orgs": lambda: [
            *School.objects.values_list("sourced_id", flat=True),
            *Organisation.objects.values_list("sourced_id", flat=True),
        ],
        "academicSessions": lambda: AcademicSession.objects.values_list("sourced_id", flat=True),
        "courses": lambda: SchoolClass.objects.values_list("course_sourced_id", flat=True),
        "classes": lambda: SchoolClass.objects.values_list("sourced_id", flat=True),
        "users": lambda: User.objects.values_list("sourced_id", flat=True),
    }

    def known(entity: str, sourced_id: str) -> bool:
        if entity not in loaded:
            loaded[entity] = {value for value in sources[entity]() if value} if entity in sources else set()
        return sourced_id in loaded[entity]

    return known


def import_bundle(
    path: Path,
    *,
    actor: User | None = None,
    today: date | None = None,
    progress: Progress | None = None,
    source_name: str | None = None,
    school_only: School | None = None,
) -> ImportResult:
    """Check and import a bundle; raise InvalidBundle (and write nothing) if it has problems.

    With `school_only` (a school admin's import), the bundle may hold no other school.
    """
    step = progress or (lambda stage: None)
    with scopes_disabled():
        step("reading")
        bundle = read_bundle(path, known_ids=_known_ids())
        if bundle.problems:
            raise InvalidBundle(bundle.problems)
        importer = _Importer(
            bundle, actor=actor, today=today or timezone.localdate(), step=step, school_only=school_only
        )
        importer.check_database()
        if importer.problems:
            raise InvalidBundle(sorted(importer.problems))
        with transaction.atomic():
            importer.run(source_name or path.name)
    return importer.result


def chunks(values: Iterable[Any], size: int = 5000) -> Iterator[list[Any]]:
    """Split long lists of ids so that no query passes more parameters than SQLite allows."""
    batch: list[Any] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def by_sourced_id(queryset: Any, sourced_ids: Iterable[str]) -> Iterator[Any]:
    for batch in chunks(sourced_ids):
        yield from queryset.filter(sourced_id__in=batch)


def _changed(obj: Any, values: dict[str, Any]) -> list[str]:
    return [name for name, value in values.items() if getattr(obj, name) != value]


def _person_role(role: str) -> str:
    """A person's role in Commonroom from their OneRoster role (a proctor is an aide)."""
    return User.Role.AIDE if role == "proctor" else role


def _audit_value(value: Any) -> Any:
    return value.pk if hasattr(value, "pk") else value


class _Importer:
    def __init__(
        self, bundle: Bundle, *, actor: User | None, today: date, step: Progress, school_only: School | None
    ) -> None:
        self.bundle = bundle
        self.school_only = school_only
        self.actor = actor
        self.today = today
        self.step = step
        self.result = ImportResult(warnings=list(bundle.warnings))
        self.problems: list[Problem] = []
        self.per_school: dict[int, dict[str, dict[str, int]]] = defaultdict(
            lambda: {e: dict.fromkeys(KINDS, 0) for e in ENTITIES}
        )
        self.events: dict[int, list[Entry]] = defaultdict(list)
        self.schools: dict[str, School] = {}
        self.org_schools: dict[str, School | None] = {}
        self.touched: set[int] = set()  # schools this import changed something in
        self.moved: set[int] = set()  # people whose enrollments or cohort changed
        self.disabled: set[int] = set()  # people this import disabled
        self.changed_classes: set[int] = set()  # classes archived, re-activated or edited
        self.in_scope: set[int] = set()
        self.users: dict[str, User] = {}
        self.classes: dict[str, SchoolClass] = {}

    # -- bookkeeping -------------------------------------------------------

    def count(self, entity: str, kind: str, school_id: int, n: int = 1) -> None:
        self.result.counts[entity][kind] += n
        self.per_school[school_id][entity][kind] += n
        if kind != "unchanged":
            self.touched.add(school_id)

    def audit(self, school_id: int, entry: Entry) -> None:
        self.events[school_id].append(entry)

    def warn(self, file: str, line: int, column: str, message: str) -> None:
        self.result.warnings.append(Problem(f"{file}.csv", line, column, message))

    # -- checks that need the database ---------------------------------------

    def check_database(self) -> None:
        """Checks that need the database, made before anything is written.

        - A username must not take over someone else's account.
        - A sourcedId already used by a record of another school is a conflict, not an
          update: one school's roster must never rename, move or end another's records.
          (A person or class moving between schools of the same trust is allowed, except
          in a school admin's import.)
        - A school admin's bundle may name no school but their own.
        """
        bundle = self.bundle
        people = {sid: row for sid, row in bundle.live("users").items() if row["role"].strip() in IMPORTED_USER_ROLES}
        wanted = {row["username"].strip().casefold(): (sid, row) for sid, row in people.items()}
        taken = User.objects.annotate(folded=Lower("username")).values_list("folded", "sourced_id")
        for batch in chunks(wanted):
            for folded, owner in taken.filter(folded__in=batch):
                sourced_id, row = wanted[folded]
                if owner != sourced_id and owner not in people:
                    self.problems.append(
                        Problem(
                            "users.csv",
                            row.line,
                            "username",
                            f"{row['username'].strip()!r} is already the username of another account",
                        )
                    )
        self.check_orgs()
        self.check_places(people)
        checks: list[tuple[str, str, type[Model], Callable[[Row], list[str]]]] = [
            ("users", "orgSourcedIds", User, lambda row: split_ids(row["orgSourcedIds"])),
            ("classes", "schoolSourcedId", SchoolClass, lambda row: [row["schoolSourcedId"].strip()]),
            ("enrollments", "schoolSourcedId", Enrollment, lambda row: [row["schoolSourcedId"].strip()]),
        ]
        for name, column, model, orgs_of in checks:
            rows = bundle.rows.get(name, {})
            target: dict[str, str | None] = {}  # sourcedId -> the sourcedId of the school it will belong to
            for sid, row in rows.items():
                if row.deleted or (name == "users" and row["role"].strip() not in IMPORTED_USER_ROLES):
                    continue
                schools = [school for org in orgs_of(row) if (school := self._school_sid(org)) is not None]
                target[sid] = schools[0] if schools else None
                if self.school_only is not None and any(s != self.school_only.sourced_id for s in schools):
                    self.problems.append(Problem(f"{name}.csv", row.line, column, "names a school that is not yours"))
            for sid, school_id in values_where_in(model, "sourced_id", rows, ("sourced_id", "school_id")):
                if school_id is None or not self._may_move(school_id, target.get(sid)):
                    self.problems.append(
                        Problem(
                            f"{name}.csv",
                            rows[sid].line,
                            "sourcedId",
                            f"{sid!r} is already used by a record of another school",
                        )
                    )

    def check_places(self, people: dict[str, Row]) -> None:
        """Places in rooms the bundle gives, checked against the people they go to (`classes.membership`):

        - an enrollment's role must fit the person's own role, as the bundle or the database has it
          (a student listed as an "administrator" of a class would count as its second adult);
        - a person whose role the bundle changes must still fit the enrollments they keep;
        - whoever imports gives themself no place: an enrollment of the importer's own account that
          the bundle would create, re-activate or change is refused.
        """
        roles = {sid: _person_role(row["role"].strip()) for sid, row in people.items()}
        enrollments = self.bundle.live("enrollments")
        stored_people = {
            sid: (pk, role)
            for sid, pk, role in values_where_in(
                User, "sourced_id", {row["userSourcedId"].strip() for row in enrollments.values()} | set(roles),
                ("sourced_id", "id", "role"),
            )
        }  # fmt: skip
        for row in enrollments.values():
            person = row["userSourcedId"].strip()
            wanted = ENROLLMENT_ROLES.get(row["role"].strip())
            role = roles.get(person) or stored_people.get(person, (0, None))[1]
            if wanted is None or role is None:
                continue  # an unknown role or person: reported by the bundle's own checks
            misfit = membership.enrollment_role_misfit(role, wanted)
            if misfit is not None:
                self.problems.append(Problem("enrollments.csv", row.line, "role", misfit))
        self._check_kept_places(people, roles, stored_people, set(enrollments))
        self._check_own_places(enrollments)

    def _check_kept_places(
        self,
        people: dict[str, Row],
        roles: dict[str, str],
        stored_people: dict[str, tuple[int, str]],
        listed: set[str],
    ) -> None:
        """People whose role changes must fit the enrollments they keep: those the bundle neither lists
        nor ends (a full bundle ends every roster enrollment it leaves out; one given by hand stays)."""
        changing = {pk: sid for sid, (pk, role) in stored_people.items() if sid in roles and roles[sid] != role}
        if not changing:
            return
        bulk = self.bundle.mode("enrollments") == "bulk"
        ended = set(self.bundle.deleted("enrollments"))
        for batch in chunks(changing):
            kept = Enrollment.objects.filter(user_id__in=batch, active=True)
            for user_id, sourced_id, enrollment_role in kept.values_list("user_id", "sourced_id", "role"):
                if sourced_id is not None and (bulk or sourced_id in listed or sourced_id in ended):
                    continue
                sid = changing[user_id]
                misfit = membership.enrollment_role_misfit(roles[sid], enrollment_role)
                if misfit is not None:
                    self.problems.append(
                        Problem("users.csv", people[sid].line, "role", f"{misfit} (an enrollment this bundle keeps)")
                    )

    def _check_own_places(self, enrollments: dict[str, Row]) -> None:
        own = self.actor.sourced_id if self.actor is not None else None
        if not own:
            return
        mine = {sid: row for sid, row in enrollments.items() if row["userSourcedId"].strip() == own}
        if not mine:
            return
        stored = {
            enrollment.sourced_id: (enrollment.active, enrollment.school_class.sourced_id, enrollment.role)
            for enrollment in Enrollment.objects.filter(sourced_id__in=list(mine)).select_related("school_class")
        }
        for sid, row in mine.items():
            wanted = (True, row["classSourcedId"].strip(), ENROLLMENT_ROLES.get(row["role"].strip()))
            if stored.get(sid) != wanted:
                self.problems.append(
                    Problem(
                        "enrollments.csv",
                        row.line,
                        "userSourcedId",
                        "is your own account: nobody can give themself a place in a room; "
                        "ask another admin or a platform operator",
                    )
                )

    @functools.cache  # noqa: B019  (one importer per import; the cache goes with it)
    def check_orgs(self) -> None:
        """Departments sit under a school; a school admin's bundle changes no other school or organisation."""
        own = self.school_only.sourced_id if self.school_only is not None else None
        for sid, row in self.bundle.rows.get("orgs", {}).items():
            kind = row["type"].strip()
            if not row.deleted and kind == "department":
                school = self._school_sid(row["parentSourcedId"].strip())
                if school is None:
                    self.problems.append(
                        Problem("orgs.csv", row.line, "parentSourcedId", "a department must sit under a school")
                    )
                elif own is not None and school != own:
                    self.problems.append(
                        Problem("orgs.csv", row.line, "parentSourcedId", "names a school that is not yours")
                    )
            if own is None or sid == own:
                continue
            if kind == "school" or (row.deleted and School.objects.filter(sourced_id=sid).exists()):
                self.problems.append(
                    Problem("orgs.csv", row.line, "sourcedId", f"{sid!r} is not your school; ask a platform operator")
                )
            elif row.deleted and self._school_sid(sid) != own:
                self.problems.append(Problem("orgs.csv", row.line, "sourcedId", f"{sid!r} is not yours to change"))

    def _school_sid(self, org_id: str) -> str | None:
        """The sourcedId of the school an org id stands for, in the bundle or stored (before anything is written)."""
        in_bundle = school_of(self.bundle, org_id)
        if in_bundle is not None:
            return in_bundle
        if School.objects.filter(sourced_id=org_id).exists():
            return org_id
        department = Organisation.objects.filter(sourced_id=org_id, kind=Organisation.Kind.DEPARTMENT).first()
        if department is not None and department.school is not None:
            return department.school.sourced_id
        return None

    def _trust_of(self, school_sid: str) -> str | None:
        row = self.bundle.rows.get("orgs", {}).get(school_sid)
        if row is not None and row["parentSourcedId"].strip():
            return row["parentSourcedId"].strip()
        return School.objects.filter(sourced_id=school_sid).values_list("organisation__sourced_id", flat=True).first()

    @functools.cache  # noqa: B019  (as above: few distinct pairs, asked once per stored row)
    def _may_move(self, school_id: int, target_sid: str | None) -> bool:
        """May a stored record of `school_id` be changed by this bundle (and moved to school `target_sid`)?"""
        if self.school_only is not None:
            return school_id == self.school_only.pk
        current = School.objects.filter(pk=school_id).values_list("sourced_id", "organisation__sourced_id").first()
        if target_sid is None or current is None or current[0] == target_sid:
            return True  # a deletion by id, a row the import skips, or no move at all
        # A move between two schools of the same trust is a transfer; anything else is a clash of ids.
        return current[1] is not None and current[1] == self._trust_of(target_sid)

    def run(self, source_name: str) -> None:
        self.org_schools.clear()  # the checks resolved org ids before the new schools existed
        self.step("schools")
        self.import_orgs()
        self.step("sessions")
        self.import_sessions()
        self.step("classes")
        self.import_classes()
        self.step("users")
        self.import_users()
        self.step("cohorts")
        self.import_cohorts()
        self.step("enrollments")
        self.import_enrollments()
        roster_changed.send(sender=_Importer, school_ids=self.in_scope | self.touched)
        if self.changed_classes:
            owners_changed.send(sender=_Importer, class_ids=self.changed_classes, cohort_ids=set())
        if self.moved:
            membership_changed.send(sender=_Importer, user_ids=self.moved)
        if self.disabled:
            sessions_ended.send(sender=_Importer, user_ids=self.disabled)
        self.step("audit")
        self.write_audit(source_name)
        self.result.school_ids = sorted(self.in_scope)

    def import_orgs(self) -> None:
        rows = self.bundle.rows.get("orgs", {})
        # Rows being deleted often carry nothing but their id; find them wherever they are stored.
        for sid in self.bundle.deleted("orgs"):
            for model in (School, Organisation):
                record = model._base_manager.filter(sourced_id=sid).first()
                if record is None:
                    continue
                if isinstance(record, School):
                    self.schools[sid] = record
                    self.in_scope.add(record.pk)
                if record.active:
                    record.active = False
                    record.save(update_fields=["active"])
                    if isinstance(record, School):
                        self.count("schools", "deactivated", record.pk)
                        self.audit(
                            record.pk, Entry.about("school.deactivated", record, {"reason": "deleted in the roster"})
                        )
                    else:
                        self.audit(
                            record.school_id or 0,
                            Entry.about("organisation.deactivated", record, {"reason": "deleted in the roster"}),
                        )
        live = self.bundle.live("orgs")
        wanted_ids = set(live) | {row["parentSourcedId"].strip() for row in live.values()}
        organisations = {o.sourced_id: o for o in Organisation.objects.filter(sourced_id__in=wanted_ids)}
        # A school admin's bundle names its trust, but the trust is not theirs to change.
        if self.school_only is None:
            for sid, row in live.items():
                kind = row["type"].strip()
                if kind in ("school", "department"):
                    continue
                values = {"name": row["name"].strip(), "kind": kind, "active": True}
                org = organisations.get(sid)
                if org is None:
                    org = organisations[sid] = Organisation.objects.create(sourced_id=sid, **values)
                    self.audit(0, Entry.about("organisation.created", org, values))  # above schools: the platform's log
                elif changed := _changed(org, values):
                    old = {name: getattr(org, name) for name in changed}
                    for name, value in values.items():
                        setattr(org, name, value)
                    org.save()
                    self.audit(0, Entry.about("organisation.updated", org, {"old": old}))
            for sid, row in live.items():
                org = organisations.get(sid)
                parent = organisations.get(row["parentSourcedId"].strip())
                if (
                    org is not None
                    and row["type"].strip() != "school"
                    and org.parent_id != (parent.pk if parent else None)
                ):
                    org.parent = parent
                    org.save(update_fields=["parent"])

        existing = {s.sourced_id: s for s in School.objects.filter(sourced_id__in=list(rows))}
        for sid, row in live.items():
            if row["type"].strip() != "school":
                continue
            school = existing.get(sid)
            parent = organisations.get(row["parentSourcedId"].strip())
            values = {"name": row["name"].strip(), "identifier": row["identifier"].strip(), "active": True}
            if self.school_only is None:
                values["organisation_id"] = parent.pk if parent else None
            if school is None:
                school = School.objects.create(sourced_id=sid, **values)
                self.count("schools", "created", school.pk)
                self.audit(school.pk, Entry.about("school.created", school, {"name": school.name}))
            else:
                changed = _changed(school, values)
                if changed:
                    old = {name: getattr(school, name) for name in changed}
                    for name in changed:
                        setattr(school, name, values[name])
                    school.save()
                    self.count("schools", "updated", school.pk)
                    self.audit(
                        school.pk,
                        Entry.about("school.updated", school, {"old": old, "new": {n: values[n] for n in changed}}),
                    )
                else:
                    self.count("schools", "unchanged", school.pk)
            self.schools[sid] = school
            self.in_scope.add(school.pk)
        for sid, row in live.items():
            if row["type"].strip() != "department":
                continue
            school = self.school_for(row["parentSourcedId"].strip())
            if school is None:
                continue
            values = {
                "name": row["name"].strip(),
                "kind": Organisation.Kind.DEPARTMENT,
                "school_id": school.pk,
                "active": True,
            }
            department = organisations.get(sid)
            if department is None:
                Organisation.objects.create(sourced_id=sid, **values)
            elif _changed(department, values):
                for name, value in values.items():
                    setattr(department, name, value)
                department.save()

    def school_for(self, org_id: str, *, scope: bool = True) -> School | None:
        """The school an org id stands for: a school or a department's school, in the bundle or stored.

        With `scope` (the default), the school joins the schools this import works on.
        """
        if org_id not in self.org_schools:
            school_sid = school_of(self.bundle, org_id) or org_id
            school = self.schools.get(school_sid) or School.objects.filter(sourced_id=school_sid).first()
            if school is None:
                department = (
                    Organisation.objects.filter(sourced_id=org_id, kind=Organisation.Kind.DEPARTMENT)
                    .select_related("school")
                    .first()
                )
                school = department.school if department is not None else None
            self.org_schools[org_id] = school
        school = self.org_schools[org_id]
        if school is not None and scope:
            self.schools.setdefault(school.sourced_id or str(school.pk), school)
            self.in_scope.add(school.pk)
        return school

    def import_sessions(self) -> None:
        rows = self.bundle.rows.get("academicSessions", {})
        if not rows:
            return
        live_schools = [s for s in self.schools.values() if s.active]
        # A session belongs to the schools whose classes use it (and its parents);
        # one that no class uses belongs to every school of the bundle.
        used_by: dict[str, set[int]] = defaultdict(set)
        for row in self.bundle.live("classes").values():
            school = self.school_for(row["schoolSourcedId"].strip())
            if school is None:
                continue
            for first in split_ids(row["termSourcedIds"]):
                term, seen = first, set()
                while term and term in rows and term not in seen:
                    seen.add(term)
                    used_by[term].add(school.pk)
                    term = rows[term]["parentSourcedId"].strip()
        wanted: dict[tuple[int, str], Any] = {}
        for sid, row in rows.items():
            for school_id in used_by.get(sid) or {s.pk for s in live_schools}:
                wanted[(school_id, sid)] = row
        existing = {
            (s.school_id, s.sourced_id): s
            for s in AcademicSession.objects.filter(school_id__in=self.in_scope, sourced_id__isnull=False)
        }
        if self.bundle.mode("academicSessions") == "delta":
            # A delta may change sessions of schools no other file of the bundle names.
            stored = AcademicSession.objects.filter(sourced_id__in=list(rows))
            if self.school_only is not None:
                stored = stored.filter(school=self.school_only)
            for stored_session in stored:
                key = (stored_session.school_id, stored_session.sourced_id or "")
                existing.setdefault(key, stored_session)
                wanted.setdefault(key, rows[key[1]])
        created: list[AcademicSession] = []
        for key, row in wanted.items():
            school_id, sid = key
            values = {
                "title": row["title"].strip(),
                "kind": row["type"].strip(),
                "start_date": parse_date(row["startDate"]) if not row.deleted else None,
                "end_date": parse_date(row["endDate"]) if not row.deleted else None,
                "school_year": int(row["schoolYear"]) if not row.deleted else None,
                "active": not row.deleted,
            }
            session = existing.get(key)
            if session is None:
                if row.deleted:
                    continue
                created.append(AcademicSession(school_id=school_id, sourced_id=sid, **values))
                self.count("sessions", "created", school_id)
                continue
            if row.deleted:
                values = {"active": False}
            changed = _changed(session, values)
            if changed:
                for name in changed:
                    setattr(session, name, values[name])
                session.save()
                self.count("sessions", "deactivated" if changed == ["active"] and row.deleted else "updated", school_id)
            else:
                self.count("sessions", "unchanged", school_id)
        AcademicSession.objects.bulk_create(created, batch_size=BATCH)
        if self.bundle.mode("academicSessions") == "bulk":
            for existing_key, session in existing.items():
                if existing_key not in wanted and session.active:
                    session.active = False
                    session.save(update_fields=["active"])
                    self.count("sessions", "deactivated", session.school_id)
        self.sessions = {
            (s.school_id, s.sourced_id or ""): s
            for s in AcademicSession.objects.filter(school_id__in=self.in_scope, sourced_id__isnull=False)
        }
        for (school_id, session_sid), session in self.sessions.items():
            parent_sid = rows[session_sid]["parentSourcedId"].strip() if session_sid in rows else ""
            parent = self.sessions.get((school_id, parent_sid))
            parent_id = parent.pk if parent else None
            if session_sid in rows and session.parent_id != parent_id:
                AcademicSession.objects.filter(pk=session.pk).update(parent_id=parent_id)

    def import_classes(self) -> None:
        rows = self.bundle.rows.get("classes", {})
        courses = self.bundle.rows.get("courses", {})
        existing = {c.sourced_id: c for c in by_sourced_id(SchoolClass.objects.all(), rows)}
        existing_terms: dict[int, set[int]] = defaultdict(set)
        through = SchoolClass.terms.through
        for class_id, session_id in through.objects.filter(
            schoolclass_id__in=[c.pk for c in existing.values()]
        ).values_list("schoolclass_id", "academicsession_id"):
            existing_terms[class_id].add(session_id)
        sessions = getattr(self, "sessions", {})
        if not sessions:
            sessions = {
                (s.school_id, s.sourced_id): s
                for s in AcademicSession.objects.filter(school_id__in=self.in_scope, sourced_id__isnull=False)
            }
        to_create: list[tuple[SchoolClass, set[int]]] = []
        term_changes: list[tuple[SchoolClass, set[int]]] = []
        for sid, row in rows.items():
            klass = existing.get(sid)
            if row.deleted:
                if klass is not None and klass.status == SchoolClass.Status.ACTIVE:
                    self._archive_class(klass, "deleted in the roster")
                continue
            school = self.school_for(row["schoolSourcedId"].strip())
            if school is None:
                continue
            course = courses.get(row["courseSourcedId"].strip())
            values = {
                "school_id": school.pk,
                "title": row["title"].strip(),
                "code": row["classCode"].strip(),
                "course_sourced_id": row["courseSourcedId"].strip(),
                "course_title": course["title"].strip() if course else (klass.course_title if klass else ""),
                "course_code": course["courseCode"].strip() if course else (klass.course_code if klass else ""),
                "status": SchoolClass.Status.ACTIVE,
                "archived_on": None,
            }
            terms = {
                sessions[(school.pk, term)].pk
                for term in split_ids(row["termSourcedIds"])
                if (school.pk, term) in sessions
            }
            if klass is None:
                to_create.append((SchoolClass(sourced_id=sid, **values), terms))
                continue
            changed = _changed(klass, values)
            if changed:
                old = {name: getattr(klass, name) for name in changed}
                for name in changed:
                    setattr(klass, name, values[name])
                klass.save()
                self.changed_classes.add(klass.pk)
                self.count("classes", "updated", school.pk)
                self.audit(
                    school.pk,
                    Entry.about(
                        "class.updated", klass, {"old": old, "new": {n: values[n] for n in changed}}, label=klass.title
                    ),
                )
            if terms != existing_terms[klass.pk]:
                term_changes.append((klass, terms))
                if not changed:
                    self.count("classes", "updated", school.pk)
            elif not changed:
                self.count("classes", "unchanged", school.pk)
            self.classes[sid] = klass
        SchoolClass.objects.bulk_create([klass for klass, _ in to_create], batch_size=BATCH)
        links: list[Any] = []
        for klass, terms in to_create:
            self.classes[klass.sourced_id or ""] = klass
            self.count("classes", "created", klass.school_id)
            self.audit(klass.school_id, Entry.about("class.created", klass, {"title": klass.title}, label=klass.title))
            links.extend(through(schoolclass_id=klass.pk, academicsession_id=term) for term in terms)
        for klass, terms in term_changes:
            through.objects.filter(schoolclass_id=klass.pk).delete()
            links.extend(through(schoolclass_id=klass.pk, academicsession_id=term) for term in terms)
        through.objects.bulk_create(links, batch_size=BATCH)
        if self.bundle.mode("classes") == "bulk":
            active = SchoolClass.objects.filter(
                school_id__in=self.in_scope, status=SchoolClass.Status.ACTIVE, sourced_id__isnull=False
            )
            for klass in [klass for klass in active if klass.sourced_id not in rows]:
                self._archive_class(klass, "not in the roster")

    def _archive_class(self, klass: SchoolClass, reason: str) -> None:
        klass.status = SchoolClass.Status.ARCHIVED
        klass.archived_on = self.today
        klass.save(update_fields=["status", "archived_on"])
        self.changed_classes.add(klass.pk)
        self.count("classes", "deactivated", klass.school_id)
        self.audit(klass.school_id, Entry.about("class.archived", klass, {"reason": reason}, label=klass.title))

    def import_users(self) -> None:
        rows = self.bundle.rows.get("users", {})
        birth_dates: dict[str, date | None] = {}
        demographics = self.bundle.live("demographics")
        for sid, row in demographics.items():
            value = row["birthDate"].strip()
            birth_dates[sid] = parse_date(value) if value else None
        existing = {u.sourced_id: u for u in by_sourced_id(User.objects.all(), rows)}
        unusable = make_password(None)
        to_create: list[User] = []
        to_update: dict[int, User] = {}
        update_fields: set[str] = set()
        renamed: list[int] = []
        for sid, row in rows.items():
            user = existing.get(sid)
            if row.deleted:
                if user is not None and user.enabled:
                    self._disable(user, "deleted in the roster", to_update, update_fields)
                elif user is not None:
                    self.count("users", "unchanged", user.school_id or 0)
                continue
            role = row["role"].strip()
            if role not in IMPORTED_USER_ROLES:
                continue  # parents and guardians have no place in Commonroom
            school_ids = []
            for org in split_ids(row["orgSourcedIds"]):
                school = self.school_for(org)
                if school is not None and school.pk not in school_ids:
                    school_ids.append(school.pk)
            if not school_ids:
                self.warn("users", row.line, "orgSourcedIds", "names no school: district-level staff are not imported")
                continue
            if len(school_ids) > 1:
                self.warn(
                    "users",
                    row.line,
                    "orgSourcedIds",
                    "names several schools; a person belongs to one school in Commonroom, the first one listed",
                )
            values: dict[str, Any] = {
                "school_id": school_ids[0],
                "username": row["username"].strip(),
                "email": row["email"].strip(),
                "given_name": row["givenName"].strip(),
                "family_name": row["familyName"].strip(),
                "role": _person_role(role),
                "grade": (split_ids(row["grades"]) or [""])[0][:8],
                "enabled": parse_bool(row["enabledUser"]),
            }
            if sid in birth_dates:
                values["birth_date"] = birth_dates[sid]
            if user is None:
                user = User(sourced_id=sid, password=unusable, **values)
                to_create.append(user)
                self.users[sid] = user
                continue
            self.users[sid] = user
            changed = _changed(user, values)
            if not changed:
                self.count("users", "unchanged", user.school_id or 0)
                continue
            old = {name: getattr(user, name) for name in changed}
            if "school_id" in changed and user.school_id is not None:
                self.touched.add(user.school_id)
            if "username" in changed:
                renamed.append(user.pk)
            if {"enabled", "role", "school_id"} & set(changed):
                self.moved.add(user.pk)  # who takes part in their rooms, or as what, changes
            for name in changed:
                setattr(user, name, values[name])
            to_update[user.pk] = user
            update_fields.update(changed)
            if changed == ["enabled"] and not values["enabled"]:
                kind, action = "deactivated", "person.disabled"
                self.disabled.add(user.pk)
            else:
                kind, action = "updated", "person.updated"
            self.count("users", kind, user.school_id or 0)
            self.audit(
                user.school_id or 0,
                Entry.about(action, user, {"old": old, "new": {n: values[n] for n in changed}}, label=user.username),
            )
        # Birth dates of people the users file does not list (a demographics delta on its own).
        others = by_sourced_id(User.objects.all(), [sid for sid in birth_dates if sid not in rows])
        for user in others:
            birth_date = birth_dates[user.sourced_id or ""]
            if user.birth_date == birth_date or (
                self.school_only is not None and user.school_id != self.school_only.pk
            ):
                continue
            old_birth_date, user.birth_date = user.birth_date, birth_date
            to_update[user.pk] = user
            update_fields.add("birth_date")
            self.count("users", "updated", user.school_id or 0)
            self.audit(
                user.school_id or 0,
                Entry.about(
                    "person.updated",
                    user,
                    {"old": {"birth_date": old_birth_date}, "new": {"birth_date": birth_date}},
                    label=user.username,
                ),
            )
        if self.bundle.mode("users") == "bulk":
            alumni = set(
                CohortMembership.objects.filter(
                    school_id__in=self.in_scope,
                    end_date__isnull=True,
                    cohort__status=Cohort.Status.GRADUATED,
                    cohort__school__alumni_keep_access=True,
                ).values_list("user_id", flat=True)
            )
            # The difference is taken here: NOT IN with tens of thousands of ids is slow in the database.
            roster = User.objects.filter(school_id__in=self.in_scope, enabled=True, sourced_id__isnull=False)
            gone = [
                pk for pk, sid in roster.values_list("pk", "sourced_id").iterator(chunk_size=BATCH) if sid not in rows
            ]
            for user in (user for batch in chunks(gone) for user in User.objects.filter(pk__in=batch)):
                if user.pk in alumni:
                    self.count("users", "unchanged", user.school_id or 0)
                    continue
                self._disable(user, "not in the roster", to_update, update_fields)
        if to_update:
            # A username may pass from one person to another in the same bundle (or two may swap):
            # park the renamed ones on placeholders first so that no write meets a name still taken.
            for batch in chunks(renamed):
                User.objects.filter(pk__in=batch).update(
                    username=Concat(Value("\u2060renaming-"), Cast("pk", CharField()))
                )
            User.objects.bulk_update(list(to_update.values()), sorted(update_fields), batch_size=BATCH)
        self._create_users(to_create)
        for user in to_create:
            self.count("users", "created", user.school_id or 0)
            self.audit(
                user.school_id or 0,
                Entry.about(
                    "person.added",
                    user,
                    {"username": user.username, "role": user.role, "enabled": user.enabled},
                    label=user.username,
                ),
            )
        self.sync_roster_roles()

    def _create_users(self, users: list[User]) -> None:
        """Insert new people in one COPY and give the objects their ids."""
        if not users:
            return
        fields = [
            "password", "is_superuser", "username", "email", "sourced_id", "school_id", "role", "given_name",
            "family_name", "birth_date", "grade", "enabled", "suspended", "is_staff", "date_joined",
        ]  # fmt: skip
        joined = timezone.now()
        for user in users:
            user.date_joined = joined
        insert_rows(User, fields, ([getattr(user, name) for name in fields] for user in users))
        by_sid = {user.sourced_id: user for user in users}
        for sourced_id, pk in values_where_in(User, "sourced_id", by_sid, ("sourced_id", "id")):
            by_sid[sourced_id].pk = pk
            by_sid[sourced_id]._state.adding = False

    def _disable(self, user: User, reason: str, to_update: dict[int, User], update_fields: set[str]) -> None:
        self.disabled.add(user.pk)
        user.enabled = False
        to_update[user.pk] = user
        update_fields.add("enabled")
        self.count("users", "deactivated", user.school_id or 0)
        self.audit(user.school_id or 0, Entry.about("person.disabled", user, {"reason": reason}, label=user.username))

    def sync_roster_roles(self) -> None:
        """Enabled teachers of the roster hold the teacher role; others lose a role the roster gave."""
        teachers = {
            (u.school_id, u.pk)
            for u in User.objects.filter(
                school_id__in=self.in_scope, role=User.Role.TEACHER, enabled=True, sourced_id__isnull=False
            ).only("pk", "school_id")
        }
        roles = {
            (r.school_id, r.user_id): r
            for r in StaffRole.objects.filter(school_id__in=self.in_scope, role=StaffRole.Role.TEACHER).select_related(
                "user"
            )
        }
        for key, role in roles.items():
            wanted = key in teachers
            if role.source != StaffRole.Source.ROSTER or role.active == wanted:
                if role.source == StaffRole.Source.ROSTER:
                    self.count("staff_roles", "unchanged", role.school_id)
                continue
            role.active = wanted
            role.save(update_fields=["active"])
            kind = "updated" if wanted else "deactivated"
            self.count("staff_roles", kind, role.school_id)
            action = "staff_role.granted" if wanted else "staff_role.revoked"
            self.audit(
                role.school_id,
                Entry.about(action, role, {"role": role.role, "user": role.user.username}, label=role.user.username),
            )
        new = [
            StaffRole(school_id=school_id, user_id=user_id, role=StaffRole.Role.TEACHER, source=StaffRole.Source.ROSTER)
            for school_id, user_id in sorted(teachers - set(roles))
            if school_id is not None
        ]
        StaffRole.objects.bulk_create(new, batch_size=BATCH)
        usernames = dict(User.objects.filter(pk__in=[r.user_id for r in new]).values_list("pk", "username"))
        for role in new:
            self.count("staff_roles", "created", role.school_id)
            self.audit(
                role.school_id,
                Entry.about(
                    "staff_role.granted",
                    role,
                    {"role": role.role, "user": usernames[role.user_id], "source": "roster"},
                    label=usernames[role.user_id],
                ),
            )

    def school_year_end(self, school_id: int) -> int | None:
        """The end year of the school year this roster is for: from the bundle, else from the school's stored years."""
        years = [
            (parse_date(row["startDate"]), parse_date(row["endDate"]), int(row["schoolYear"]))
            for row in self.bundle.live("academicSessions").values()
            if row["type"].strip() == "schoolYear"
        ]
        if not years:
            years = list(
                AcademicSession.objects.filter(
                    school_id=school_id, kind=AcademicSession.Kind.SCHOOL_YEAR, active=True
                ).values_list("start_date", "end_date", "school_year")
            )
        for start, end, year in sorted(years):
            if start <= self.today <= end:
                return year
        upcoming = [y for y in sorted(years) if y[0] > self.today]
        if upcoming:
            return upcoming[0][2]
        if years:
            return max(years, key=lambda y: y[1])[2]
        return None

    def import_cohorts(self) -> None:
        rows = self.bundle.live("users")
        end_years: dict[int, int | None] = {}
        schools = {s.pk: s for s in self.schools.values()}
        targets: dict[int, tuple[int, int]] = {}  # user id -> (school id, graduation year)
        for sid, user in self.users.items():
            if user.role != User.Role.STUDENT or user.school_id is None:
                continue
            row = rows[sid]
            cohort_value = row["metadata.cohort"].strip()
            if cohort_value:
                year = parse_cohort(cohort_value)
            else:
                grade = parse_grade(row["grades"])
                school = schools.get(user.school_id) or School.objects.get(pk=user.school_id)
                if user.school_id not in end_years:
                    end_years[user.school_id] = self.school_year_end(user.school_id)
                end_year = end_years[user.school_id]
                if end_year is None:
                    continue  # no school year known here or in the bundle: the cohort stays as it is
                if grade is None or not -1 <= grade <= school.final_grade:
                    self.warn(
                        "users",
                        row.line,
                        "grades",
                        f"{row['grades'].strip()!r} is not a grade up to {school.final_grade} and there is no "
                        "metadata.cohort: the student is in no cohort",
                    )
                    continue
                year = end_year + (school.final_grade - grade)
            targets[user.pk] = (user.school_id, year)
        if not targets:
            return
        cohorts = {(c.school_id, c.graduation_year): c for c in Cohort.objects.filter(school_id__in=self.in_scope)}
        new_cohorts = [
            Cohort(school_id=s, graduation_year=y) for (s, y) in sorted(set(targets.values()) - set(cohorts))
        ]
        Cohort.objects.bulk_create(new_cohorts, batch_size=BATCH)
        for cohort in new_cohorts:
            cohorts[(cohort.school_id, cohort.graduation_year)] = cohort
            self.count("cohorts", "created", cohort.school_id)
            self.audit(
                cohort.school_id, Entry.about("cohort.created", cohort, {"graduation_year": cohort.graduation_year})
            )
        used = set(targets.values())
        for key, cohort in cohorts.items():
            if key in used and cohort not in new_cohorts:
                self.count("cohorts", "unchanged", cohort.school_id)
        memberships: dict[int, list[CohortMembership]] = defaultdict(list)
        for place in CohortMembership.objects.filter(user_id__in=list(targets)):
            memberships[place.user_id].append(place)
        to_create: list[CohortMembership] = []
        usernames = {u.pk: u.username for u in self.users.values()}
        for user_id, (school_id, year) in targets.items():
            cohort = cohorts[(school_id, year)]
            current = next((m for m in memberships[user_id] if m.end_date is None), None)
            if current is not None and current.cohort_id == cohort.pk:
                self.count("cohort_memberships", "unchanged", school_id)
                continue
            self.moved.add(user_id)
            if current is not None:
                CohortMembership.objects.filter(pk=current.pk).update(end_date=self.today)
                self.count("cohort_memberships", "deactivated", school_id)
            earlier = next((m for m in memberships[user_id] if m.cohort_id == cohort.pk), None)
            if earlier is not None:
                CohortMembership.objects.filter(pk=earlier.pk).update(end_date=None)
                self.count("cohort_memberships", "updated", school_id)
            else:
                to_create.append(
                    CohortMembership(school_id=school_id, cohort=cohort, user_id=user_id, begin_date=self.today)
                )
                self.count("cohort_memberships", "created", school_id)
            self.audit(
                school_id,
                Entry(
                    action="cohort_membership.changed",
                    target_type="classes.user",
                    target_id=str(user_id),
                    target_label=usernames.get(user_id, ""),
                    payload={
                        "from_cohort": current.cohort_id if current else None,
                        "to_cohort": cohort.pk,
                        "graduation_year": year,
                    },
                ),
            )
        CohortMembership.objects.bulk_create(to_create, batch_size=BATCH)

    ENROLLMENT_FIELDS = (
        "school_id", "school_class_id", "user_id", "role", "primary", "begin_date", "end_date", "active",
    )  # fmt: skip

    def import_enrollments(self) -> None:
        rows = self.bundle.rows.get("enrollments", {})
        if not rows and self.bundle.mode("enrollments") != "bulk":
            return
        fields = self.ENROLLMENT_FIELDS
        for row in self.bundle.live("enrollments").values():
            self.school_for(row["schoolSourcedId"].strip())  # a delta may name schools no other file does
        # Plain tuples, not model instances: a school district has hundreds of thousands.
        stored = Enrollment.objects.filter(sourced_id__isnull=False).values_list("pk", "sourced_id", *fields)
        existing: dict[str, tuple[int, tuple[Any, ...]]] = {
            sid: (pk, tuple(values))
            for pk, sid, *values in stored.filter(school_id__in=self.in_scope).iterator(chunk_size=BATCH)
        }
        for batch in chunks(sid for sid in self.bundle.deleted("enrollments") if sid not in existing):
            for pk, sid, *values in stored.filter(sourced_id__in=batch):
                existing[sid] = (pk, tuple(values))
        wanted_users = {row["userSourcedId"].strip() for row in rows.values()} - set(self.users)
        for user in by_sourced_id(User.objects.only("pk", "sourced_id", "school_id", "username"), wanted_users):
            self.users[user.sourced_id or ""] = user
        wanted_classes = {row["classSourcedId"].strip() for row in rows.values()} - set(self.classes)
        for klass in by_sourced_id(SchoolClass.objects.all(), wanted_classes):
            self.classes[klass.sourced_id or ""] = klass
        to_create: list[tuple[str, tuple[Any, ...]]] = []
        to_update: dict[int, dict[str, Any]] = {}
        admins = set(
            StaffRole.objects.filter(
                school_id__in=self.in_scope, role=StaffRole.Role.SCHOOL_ADMIN, active=True
            ).values_list("user_id", flat=True)
        )
        for sid, row in rows.items():
            current = existing.get(sid)
            if row.deleted:
                if current is not None and current[1][-1]:
                    self._end(sid, current, "deleted in the roster", to_update)
                continue
            person = self.users.get(row["userSourcedId"].strip())
            school_class = self.classes.get(row["classSourcedId"].strip())
            if person is None or school_class is None:
                continue  # a parent, or a person skipped with a warning above
            user, klass = person, school_class
            if user.pk in admins and current is None:
                self.warn(
                    "enrollments",
                    row.line,
                    "userSourcedId",
                    f"{user.username!r} is a school admin in Commonroom and takes part in no room while they hold "
                    "that role (whoever provisions the school does not read it); the enrollment is kept for later",
                )
            if user.school_id != klass.school_id:
                self.warn(
                    "enrollments",
                    row.line,
                    "userSourcedId",
                    f"{user.username!r} belongs to another school than class {klass.sourced_id!r}; enrollment skipped",
                )
                continue
            begin, end = row["beginDate"].strip(), row["endDate"].strip()
            values = (
                klass.school_id,
                klass.pk,
                user.pk,
                ENROLLMENT_ROLES[row["role"].strip()],
                bool(row["primary"].strip()) and parse_bool(row["primary"]),
                parse_date(begin) if begin else None,
                parse_date(end) if end else None,
                True,
            )
            if current is None:
                to_create.append((sid, values))
                continue
            pk, old_values = current
            if old_values == values:
                self.count("enrollments", "unchanged", klass.school_id)
                continue
            changed = {name: new for name, old, new in zip(fields, old_values, values, strict=True) if old != new}
            old = {name: old for name, old, new in zip(fields, old_values, values, strict=True) if old != new}
            to_update[pk] = changed
            self.moved.add(values[2])
            self.count("enrollments", "updated", klass.school_id)
            self.audit(
                klass.school_id,
                Entry(
                    action="enrollment.reactivated" if "active" in changed else "enrollment.updated",
                    target_type="classes.enrollment",
                    target_id=str(pk),
                    target_label=f"{user.username} in {klass.title}",
                    payload={
                        "user": user.username,
                        "class": klass.title,
                        "class_id": klass.pk,
                        "old": old,
                        "new": changed,
                    },
                ),
            )
        if self.bundle.mode("enrollments") == "bulk":
            for sid, current in existing.items():
                if sid not in rows and current[1][-1]:
                    self._end(sid, current, "not in the roster", to_update)
        self._create_enrollments(to_create)
        self._update_enrollments(to_update)

    def _create_enrollments(self, to_create: list[tuple[str, tuple[Any, ...]]]) -> None:
        if not to_create:
            return
        insert_rows(Enrollment, ("sourced_id", *self.ENROLLMENT_FIELDS), ((sid, *values) for sid, values in to_create))
        ids = dict(values_where_in(Enrollment, "sourced_id", (sid for sid, _ in to_create), ("sourced_id", "id")))
        user_names = {u.pk: u.username for u in self.users.values()}
        class_titles = {c.pk: c.title for c in self.classes.values()}
        for sid, (school_id, class_id, user_id, role, _primary, begin, end, _active) in to_create:
            self.moved.add(user_id)
            self.count("enrollments", "created", school_id)
            username, title = user_names[user_id], class_titles[class_id]
            self.audit(
                school_id,
                Entry(
                    action="enrollment.created",
                    target_type="classes.enrollment",
                    target_id=str(ids[sid]),
                    target_label=f"{username} in {title}",
                    payload={
                        "user": username,
                        "class": title,
                        "class_id": class_id,
                        "role": role,
                        "begin_date": begin,
                        "end_date": end,
                    },
                ),
            )

    def _update_enrollments(self, to_update: dict[int, dict[str, Any]]) -> None:
        if not to_update:
            return
        fields = sorted({name for changes in to_update.values() for name in changes})
        current = Enrollment.objects.in_bulk(list(to_update))
        for pk, changes in to_update.items():
            for name, value in changes.items():
                setattr(current[pk], name, value)
        Enrollment.objects.bulk_update(list(current.values()), fields, batch_size=BATCH)

    def _end(
        self, sid: str, current: tuple[int, tuple[Any, ...]], reason: str, to_update: dict[int, dict[str, Any]]
    ) -> None:
        pk, (school_id, class_id, user_id, _role, _primary, _begin, end_date, _active) = current
        end = end_date if end_date is not None and end_date <= self.today else self.today
        to_update[pk] = {"active": False, "end_date": end}
        self.moved.add(user_id)
        self.count("enrollments", "deactivated", school_id)
        self.audit(
            school_id,
            Entry(
                action="enrollment.ended",
                target_type="classes.enrollment",
                target_id=str(pk),
                target_label=f"enrollment {sid}",
                payload={"reason": reason, "user_id": user_id, "class_id": class_id},
            ),
        )

    def write_audit(self, source_name: str) -> None:
        school_ids = sorted(self.in_scope | self.touched | set(self.events))
        if not school_ids:
            school_ids = [0]  # nothing of any school: the import is still on the (platform's) record
        for school_id in school_ids:
            counts = self.per_school[school_id]
            entries = [
                *self.events.get(school_id, []),
                Entry(
                    action="roster.imported",
                    target_type="classes.school",
                    target_id=str(school_id),
                    payload={
                        "bundle": source_name,
                        "modes": self.bundle.modes,
                        "counts": counts,
                        "warnings": len(self.result.warnings),
                    },
                ),
            ]
            record_many(entries, school_id=school_id or None, actor=self.actor, fetch=False)
