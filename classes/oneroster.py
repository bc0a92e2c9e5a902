"""Reading and validating a OneRoster 1.1 CSV bundle.

`read_bundle` reads a folder or a .zip and checks the whole bundle before
anything is written: every problem is collected as a `Problem` with its file,
line and column, so that a school fixes its export once, not one error at a
time. Real exports carry a UTF-8 byte-order mark, CRLF line ends, quoted
fields with commas, several ids in one field and extension columns; all of
that is read as the standard allows.

References that are not in the bundle may point at rows already imported
when the file that would hold them is a delta or absent; `known_ids` lets the
caller say which ids the database already has.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

FILES = ("orgs", "academicSessions", "courses", "classes", "users", "enrollments", "demographics")

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "orgs": ("sourcedId", "name", "type"),
    "academicSessions": ("sourcedId", "title", "type", "startDate", "endDate", "schoolYear"),
    "courses": ("sourcedId", "title", "orgSourcedId"),
    "classes": ("sourcedId", "title", "courseSourcedId", "schoolSourcedId", "termSourcedIds"),
    "users": ("sourcedId", "enabledUser", "orgSourcedIds", "role", "username", "givenName", "familyName"),
    "enrollments": ("sourcedId", "classSourcedId", "schoolSourcedId", "userSourcedId", "role"),
    "demographics": ("sourcedId",),
}

ORG_TYPES = {"school", "district", "local", "state", "national", "department"}
SESSION_TYPES = {"schoolYear", "semester", "term", "gradingPeriod"}
USER_ROLES = {"student", "teacher", "aide", "administrator", "proctor", "parent", "guardian", "relative"}
IMPORTED_USER_ROLES = {"student", "teacher", "aide", "administrator", "proctor"}
ENROLLMENT_ROLES = {
    "student": "student",
    "teacher": "teacher",
    "aide": "aide",
    "proctor": "aide",
    "administrator": "aide",
}

MODES = {"bulk", "delta", "absent"}

# The longest value each column may hold (the database column it lands in).
MAX_LENGTHS: dict[str, dict[str, int]] = {
    "orgs": {"sourcedId": 255, "name": 255, "identifier": 255},
    "academicSessions": {"sourcedId": 255, "title": 255},
    "courses": {"sourcedId": 255, "title": 255, "courseCode": 64},
    "classes": {"sourcedId": 255, "title": 255, "classCode": 64},
    "users": {"sourcedId": 255, "username": 150, "givenName": 150, "familyName": 150, "email": 254},
    "enrollments": {"sourcedId": 255},
    "demographics": {"sourcedId": 255},
}


class BundleError(Exception):
    """The bundle cannot be read at all (not a folder or zip, no manifest)."""


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.column}: {self.message}"


@dataclass
class Row:
    """One row of a file: its line, whether it is a deletion, and its fields."""

    line: int
    deleted: bool
    fields: dict[str, str]

    def __getitem__(self, column: str) -> str:
        return self.fields.get(column, "")


@dataclass
class Bundle:
    modes: dict[str, str]
    rows: dict[str, dict[str, Row]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def mode(self, name: str) -> str:
        return self.modes.get(name, "absent")

    def live(self, name: str) -> dict[str, Row]:
        return {key: row for key, row in self.rows.get(name, {}).items() if not row.deleted}

    def deleted(self, name: str) -> dict[str, Row]:
        return {key: row for key, row in self.rows.get(name, {}).items() if row.deleted}


# -- opening files --------------------------------------------------------


class _Source:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.names: dict[str, str] = {}
        if path.is_dir():
            self.names = {p.name: str(p) for p in path.iterdir() if p.is_file()}
        elif path.is_file() and zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            for info in self.zip.infolist():
                if not info.is_dir():
                    # Some exporters put the files in a folder inside the zip.
                    self.names.setdefault(info.filename.rsplit("/", 1)[-1], info.filename)
        else:
            raise BundleError(f"{path}: not a folder or a .zip file")

    def has(self, filename: str) -> bool:
        return filename in self.names

    def open(self, filename: str) -> IO[str]:
        if self.zip is not None:
            raw = self.zip.open(self.names[filename])
            return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        return open(self.names[filename], encoding="utf-8-sig", newline="")

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def _records(handle: IO[str]) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(handle, strict=True)
    for record in reader:
        yield reader.line_num, record


# -- value checks ----------------------------------------------------------

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_date(value: str) -> date:
    value = value.strip()
    if not DATE_RE.match(value):
        raise ValueError
    return date.fromisoformat(value)


def split_ids(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError


GRADE_RE = re.compile(r"^\d{1,2}$", re.ASCII)


def parse_grade(value: str) -> int | None:
    """A OneRoster grade as a number: "09" is 9, kindergarten 0, pre-school -1; others have none."""
    first = (split_ids(value) or [""])[0].upper()
    if GRADE_RE.match(first):
        return int(first)
    return {"KG": 0, "TK": 0, "PK": -1, "PR": -1, "IT": -1}.get(first)


COHORT_RE = re.compile(r"^(?:class of\s+)?(\d{4})$", re.IGNORECASE | re.ASCII)
COHORT_YEARS = range(1900, 2201)


def parse_cohort(value: str) -> int:
    match = COHORT_RE.match(value.strip())
    if not match or int(match.group(1)) not in COHORT_YEARS:
        raise ValueError
    return int(match.group(1))


# -- reading ---------------------------------------------------------------


def _read_manifest(source: _Source, problems: list[Problem]) -> dict[str, str]:
    if not source.has("manifest.csv"):
        raise BundleError(f"{source.path}: manifest.csv is missing; this is not a OneRoster CSV bundle")
    values: dict[str, str] = {}
    with source.open("manifest.csv") as handle:
        try:
            records = list(_records(handle))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise BundleError(f"manifest.csv: cannot be read: {exc}") from None
    for line, record in records[1:]:
        if len(record) >= 2:
            values[record[0].strip()] = record[1].strip()
        elif record:
            problems.append(Problem("manifest.csv", line, "value", "expected a propertyName and a value"))
    version = values.get("oneroster.version")
    if version and not version.startswith("1."):
        problems.append(Problem("manifest.csv", 1, "oneroster.version", f"version {version} is not supported (1.x)"))
    modes: dict[str, str] = {}
    for name in FILES:
        mode = values.get(f"file.{name}", "absent").strip().lower()
        if mode not in MODES:
            problems.append(Problem("manifest.csv", 1, f"file.{name}", f"must be bulk, delta or absent, not {mode!r}"))
            mode = "absent"
        if mode != "absent" and not source.has(f"{name}.csv"):
            problems.append(
                Problem(f"{name}.csv", 0, "file", f"the manifest lists it as {mode} but it is not in the bundle")
            )
            mode = "absent"
        modes[name] = mode
    return modes


def _read_file(source: _Source, name: str, mode: str, problems: list[Problem]) -> dict[str, Row]:
    filename = f"{name}.csv"
    rows: dict[str, Row] = {}
    with source.open(filename) as handle:
        records = _records(handle)
        try:
            first = next(records, None)
            if first is None:
                problems.append(Problem(filename, 1, "header", "the file is empty"))
                return rows
            header = [column.strip() for column in first[1]]
            missing = [column for column in REQUIRED_COLUMNS[name] if column not in header]
            for column in missing:
                problems.append(Problem(filename, 1, column, "required column is missing"))
            if missing:
                return rows
            width = len(header)
            for line, record in records:
                if not any(cell.strip() for cell in record):
                    continue  # blank line
                if len(record) != width:
                    problems.append(
                        Problem(filename, line, "row", f"has {len(record)} fields where the header has {width}")
                    )
                    continue
                values = dict(zip(header, record, strict=True))
                nul = next((column for column, value in values.items() if "\x00" in value), None)
                if nul is not None:
                    problems.append(Problem(filename, line, nul, "contains a NUL character"))
                    continue
                sourced_id = values["sourcedId"].strip()
                status = values.get("status", "").strip().lower()
                if not sourced_id:
                    problems.append(Problem(filename, line, "sourcedId", "is empty"))
                    continue
                if status not in ("", "active", "tobedeleted"):
                    problems.append(Problem(filename, line, "status", f"must be active or tobedeleted, not {status!r}"))
                    continue
                if status == "tobedeleted" and mode == "bulk":
                    problems.append(
                        Problem(filename, line, "status", "tobedeleted is only allowed in a delta file (see manifest)")
                    )
                    continue
                if sourced_id in rows:
                    problems.append(
                        Problem(
                            filename,
                            line,
                            "sourcedId",
                            f"duplicate sourcedId {sourced_id!r} (first on line {rows[sourced_id].line})",
                        )
                    )
                    continue
                rows[sourced_id] = Row(line=line, deleted=status == "tobedeleted", fields=values)
        except csv.Error as exc:
            problems.append(Problem(filename, getattr(exc, "line_num", 0) or 0, "row", f"is not valid CSV: {exc}"))
        except UnicodeDecodeError:
            problems.append(Problem(filename, 0, "file", "is not UTF-8 text"))
    return rows


KnownIds = Callable[[str, str], bool]
"""known_ids(entity, sourced_id): does the database already hold it?"""


def read_bundle(path: Path, known_ids: KnownIds | None = None) -> Bundle:
    try:
        return _read_bundle(path, known_ids)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise BundleError(f"{path}: cannot be read ({exc})") from None


def _read_bundle(path: Path, known_ids: KnownIds | None) -> Bundle:
    source = _Source(path)
    try:
        problems: list[Problem] = []
        modes = _read_manifest(source, problems)
        bundle = Bundle(modes=modes, problems=problems)
        for name in FILES:
            if modes[name] != "absent":
                bundle.rows[name] = _read_file(source, name, modes[name], problems)
    finally:
        source.close()
    _Checker(bundle, known_ids or (lambda entity, sourced_id: False)).check()
    bundle.problems.sort()
    return bundle


class _Checker:
    """Checks values and references across the files of a bundle."""

    def __init__(self, bundle: Bundle, known_ids: KnownIds) -> None:
        self.bundle = bundle
        self.known_ids = known_ids

    def problem(self, name: str, row: Row, column: str, message: str) -> None:
        self.bundle.problems.append(Problem(f"{name}.csv", row.line, column, message))

    def warn(self, name: str, row: Row, column: str, message: str) -> None:
        self.bundle.warnings.append(Problem(f"{name}.csv", row.line, column, message))

    def exists(self, entity: str, sourced_id: str) -> bool:
        """Is `sourced_id` a live row of `entity` in the bundle, or (for delta or absent files) in the database?"""
        rows = self.bundle.rows.get(entity, {})
        if sourced_id in rows:
            return not rows[sourced_id].deleted
        return self.bundle.mode(entity) != "bulk" and self.known_ids(entity, sourced_id)

    def ref(self, name: str, row: Row, column: str, entity: str, sourced_id: str) -> bool:
        if not self.exists(entity, sourced_id):
            self.problem(name, row, column, f"refers to {entity} {sourced_id!r}, which is not in the bundle")
            return False
        return True

    def date(self, name: str, row: Row, column: str, *, required: bool) -> None:
        value = row[column].strip()
        if not value:
            if required:
                self.problem(name, row, column, "is empty")
            return
        try:
            parse_date(value)
        except ValueError:
            self.problem(name, row, column, f"{value!r} is not a date (YYYY-MM-DD)")

    def nonempty(self, name: str, row: Row, *columns: str) -> None:
        for column in columns:
            if not row[column].strip():
                self.problem(name, row, column, "is empty")

    def lengths(self, name: str) -> None:
        limits = MAX_LENGTHS.get(name, {})
        for row in self.bundle.rows.get(name, {}).values():
            for column, limit in limits.items():
                if len(row[column].strip()) > limit:
                    self.problem(
                        name, row, column, f"is {len(row[column].strip())} characters long; at most {limit} fit"
                    )

    def check(self) -> None:
        live = self.bundle.live
        for name in FILES:
            self.lengths(name)
        orgs = self.bundle.rows.get("orgs", {})
        for row in live("orgs").values():
            self.nonempty("orgs", row, "name")
            if row["type"].strip() not in ORG_TYPES:
                self.problem("orgs", row, "type", f"must be one of {', '.join(sorted(ORG_TYPES))}, not {row['type']!r}")
            parent = row["parentSourcedId"].strip()
            if parent:
                self.ref("orgs", row, "parentSourcedId", "orgs", parent)
            if row["type"].strip() == "department":
                above = orgs.get(parent)
                if not parent or (above is not None and above["type"].strip() != "school"):
                    self.problem("orgs", row, "parentSourcedId", "a department must sit under a school")
        for row in live("academicSessions").values():
            self.nonempty("academicSessions", row, "title")
            if row["type"].strip() not in SESSION_TYPES:
                self.problem(
                    "academicSessions",
                    row,
                    "type",
                    f"must be one of {', '.join(sorted(SESSION_TYPES))}, not {row['type']!r}",
                )
            self.date("academicSessions", row, "startDate", required=True)
            self.date("academicSessions", row, "endDate", required=True)
            try:
                if parse_date(row["endDate"]) < parse_date(row["startDate"]):
                    self.problem("academicSessions", row, "endDate", "is before startDate")
            except ValueError:
                pass
            if not re.fullmatch(r"\d{4}", row["schoolYear"].strip()):
                self.problem("academicSessions", row, "schoolYear", f"{row['schoolYear']!r} is not a year such as 2027")
            parent = row["parentSourcedId"].strip()
            if parent:
                self.ref("academicSessions", row, "parentSourcedId", "academicSessions", parent)
        for row in live("courses").values():
            self.nonempty("courses", row, "title")
            self.ref("courses", row, "orgSourcedId", "orgs", row["orgSourcedId"].strip())
        for row in live("classes").values():
            self.nonempty("classes", row, "title")
            self.ref("classes", row, "courseSourcedId", "courses", row["courseSourcedId"].strip())
            self._school_ref("classes", row, "schoolSourcedId")
            terms = split_ids(row["termSourcedIds"])
            if not terms:
                self.problem("classes", row, "termSourcedIds", "is empty")
            for term in terms:
                self.ref("classes", row, "termSourcedIds", "academicSessions", term)
        usernames: dict[str, int] = {}
        for row in live("users").values():
            self.nonempty("users", row, "username")
            username = row["username"].strip()
            if username and row["role"].strip() in IMPORTED_USER_ROLES:
                # Usernames that differ only in case are one sign-in name to a person.
                key = username.casefold()
                if key in usernames:
                    self.problem(
                        "users", row, "username", f"duplicate username {username!r} (first on line {usernames[key]})"
                    )
                else:
                    usernames[key] = row.line
            role = row["role"].strip()
            if role not in USER_ROLES:
                self.problem("users", row, "role", f"must be one of {', '.join(sorted(USER_ROLES))}, not {role!r}")
            try:
                parse_bool(row["enabledUser"])
            except ValueError:
                self.problem("users", row, "enabledUser", f"must be true or false, not {row['enabledUser']!r}")
            user_orgs = split_ids(row["orgSourcedIds"])
            if not user_orgs:
                self.problem("users", row, "orgSourcedIds", "is empty")
            for org in user_orgs:
                self.ref("users", row, "orgSourcedIds", "orgs", org)
            cohort = row["metadata.cohort"].strip()
            if cohort:
                try:
                    parse_cohort(cohort)
                except ValueError:
                    self.problem("users", row, "metadata.cohort", f"{cohort!r} is not a graduation year such as 2027")
        for row in live("enrollments").values():
            role = row["role"].strip()
            if role not in ENROLLMENT_ROLES:
                self.problem(
                    "enrollments", row, "role", f"must be one of {', '.join(sorted(ENROLLMENT_ROLES))}, not {role!r}"
                )
            self.ref("enrollments", row, "classSourcedId", "classes", row["classSourcedId"].strip())
            self._school_ref("enrollments", row, "schoolSourcedId")
            self.ref("enrollments", row, "userSourcedId", "users", row["userSourcedId"].strip())
            self.date("enrollments", row, "beginDate", required=False)
            self.date("enrollments", row, "endDate", required=False)
            if row["primary"].strip():
                try:
                    parse_bool(row["primary"])
                except ValueError:
                    self.problem("enrollments", row, "primary", f"must be true or false, not {row['primary']!r}")
            klass = self.bundle.rows.get("classes", {}).get(row["classSourcedId"].strip())
            if klass is not None and klass["schoolSourcedId"].strip() != row["schoolSourcedId"].strip():
                self.problem(
                    "enrollments",
                    row,
                    "schoolSourcedId",
                    f"is {row['schoolSourcedId']!r} but class {klass['sourcedId']!r} "
                    f"belongs to {klass['schoolSourcedId']!r}",
                )
        for row in live("demographics").values():
            self.ref("demographics", row, "sourcedId", "users", row["sourcedId"].strip())
            self.date("demographics", row, "birthDate", required=False)

    def _school_ref(self, name: str, row: Row, column: str) -> None:
        sourced_id = row[column].strip()
        if not self.ref(name, row, column, "orgs", sourced_id):
            return
        org = self.bundle.rows.get("orgs", {}).get(sourced_id)
        if org is not None and org["type"].strip() not in ("school", "department"):
            self.problem(
                name, row, column, f"refers to org {sourced_id!r}, which is a {org['type'].strip()}, not a school"
            )


def school_of(bundle: Bundle, org_id: str) -> str | None:
    """The school an org id stands for: itself, or the school above a department."""
    orgs = bundle.rows.get("orgs", {})
    seen = set()
    while org_id in orgs and org_id not in seen:
        seen.add(org_id)
        row = orgs[org_id]
        kind = row["type"].strip()
        if kind == "school":
            return org_id
        if kind != "department":
            return None
        org_id = row["parentSourcedId"].strip()
    return None


def as_json(problems: list[Problem]) -> list[dict[str, Any]]:
    return [{"file": p.file, "line": p.line, "column": p.column, "message": p.message} for p in problems]
