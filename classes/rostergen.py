"""Writing synthetic OneRoster 1.1 CSV bundles: for the demo school, the tests and the import benchmark.

The files look like a real SIS export: a byte-order mark, CRLF line ends,
quoted fields, a district above the schools, terms under a school year, an
extension column, teachers and aides. Names and ids are deterministic, so the
same arguments write the same bundle.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

GIVEN = [
    "Amara",
    "Ben",
    "Chloe",
    "Dev",
    "Ella",
    "Finn",
    "Grace",
    "Hugo",
    "Isla",
    "Jack",
    "Kai",
    "Layla",
    "Mo",
    "Nia",
    "Oscar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Umar",
    "Vera",
    "Will",
    "Xena",
    "Yusuf",
    "Zoe",
    "Aled",
    "Bea",
    "Cian",
    "Dara",
]
FAMILY = [
    "Adams",
    "Begum",
    "Clarke",
    "Davies",
    "Evans",
    "Fraser",
    "Green",
    "Hughes",
    "Iqbal",
    "Jones",
    "Khan",
    "Lewis",
    "Morgan",
    "Nowak",
    "Owen",
    "Patel",
    "Quinn",
    "Roberts",
    "Singh",
    "Taylor",
    "Usman",
    "Vaughan",
    "Walsh",
    "Xu",
    "Young",
    "Zhou",
]
SUBJECTS = ("English", "Maths", "Science", "History", "Geography", "Art", "Music", "Computing", "French", "PE")

HEADERS = {
    "orgs": ["sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId"],
    "academicSessions": [
        "sourcedId", "status", "dateLastModified", "title", "type", "startDate", "endDate", "parentSourcedId",
        "schoolYear",
    ],
    "courses": [
        "sourcedId", "status", "dateLastModified", "schoolYearSourcedId", "title", "courseCode", "grades",
        "orgSourcedId", "subjects", "subjectCodes",
    ],
    "classes": [
        "sourcedId", "status", "dateLastModified", "title", "grades", "courseSourcedId", "classCode", "classType",
        "location", "schoolSourcedId", "termSourcedIds", "subjects", "subjectCodes", "periods",
    ],
    "users": [
        "sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role", "username", "userIds",
        "givenName", "familyName", "middleName", "identifier", "email", "sms", "phone", "agentSourcedIds", "grades",
        "password", "metadata.cohort",
    ],
    "enrollments": [
        "sourcedId", "status", "dateLastModified", "classSourcedId", "schoolSourcedId", "userSourcedId", "role",
        "primary", "beginDate", "endDate",
    ],
    "demographics": ["sourcedId", "status", "dateLastModified", "birthDate", "sex"],
}  # fmt: skip


def school_year_end(today: date) -> int:
    """The calendar year in which the school year around `today` ends (years start in August)."""
    return today.year + 1 if today.month >= 8 else today.year


@dataclass
class RosterSpec:
    """What to generate. Every school gets the same shape."""

    prefix: str = "demo"
    district: str | None = "Riverside Learning Trust"
    school_names: Sequence[str] = ("Northfield Academy",)
    year_end: int = 2027
    grades: Sequence[int] = (11, 12)
    students_per_grade: int = 30
    subjects_per_student: int = 3
    class_size: int = 30
    classes_per_teacher: int = 2
    aides_per_school: int = 1
    administrators_per_school: int = 1
    extra_users: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Written:
    users: int = 0
    enrollments: int = 0
    classes: int = 0


def _rows(spec: RosterSpec) -> tuple[dict[str, list[dict[str, str]]], Written]:
    files: dict[str, list[dict[str, str]]] = {name: [] for name in HEADERS}
    written = Written()

    def add(file: str, /, **values: str) -> None:
        files[file].append(values)

    p = spec.prefix
    year = spec.year_end
    district_id = f"{p}-district"
    if spec.district:
        add("orgs", sourcedId=district_id, name=spec.district, type="district", identifier=f"{p.upper()}-D")
    year_id = f"{p}-year-{year}"
    terms = [f"{p}-term-{year}-1", f"{p}-term-{year}-2"]
    add(
        "academicSessions",
        sourcedId=year_id,
        title=f"{year - 1}-{year}",
        type="schoolYear",
        startDate=f"{year - 1}-09-01",
        endDate=f"{year}-07-31",
        schoolYear=str(year),
    )
    add(
        "academicSessions",
        sourcedId=terms[0],
        title=f"Autumn {year - 1}",
        type="semester",
        startDate=f"{year - 1}-09-01",
        endDate=f"{year}-01-31",
        parentSourcedId=year_id,
        schoolYear=str(year),
    )
    add(
        "academicSessions",
        sourcedId=terms[1],
        title=f"Spring {year}",
        type="semester",
        startDate=f"{year}-02-01",
        endDate=f"{year}-07-31",
        parentSourcedId=year_id,
        schoolYear=str(year),
    )
    person = 0
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    for s, school_name in enumerate(spec.school_names):
        school_id = f"{p}-school-{s}"
        add(
            "orgs",
            sourcedId=school_id,
            name=school_name,
            type="school",
            identifier=f"{p.upper()}-{s}",
            parentSourcedId=district_id if spec.district else "",
        )
        staff_orgs = f"{school_id},{district_id}" if spec.district else school_id
        classes: list[tuple[str, int]] = []  # (class id, grade)
        sections = max(1, -(-spec.students_per_grade // spec.class_size))
        for grade in spec.grades:
            for subject in SUBJECTS[: spec.subjects_per_student]:
                course_id = f"{p}-course-{s}-{grade}-{subject.lower()}"
                code = f"{subject[:3].upper()}{grade}"
                add(
                    "courses",
                    sourcedId=course_id,
                    schoolYearSourcedId=year_id,
                    title=f"{subject} Year {grade}",
                    courseCode=code,
                    grades=f"{grade:02d}",
                    orgSourcedId=school_id,
                    subjects=subject,
                )
                for section in range(sections):
                    class_id = f"{course_id}-{section}"
                    title = f"{subject} {grade}{letters[section % 24]}" + (f"{section // 24}" if section >= 24 else "")
                    add(
                        "classes",
                        sourcedId=class_id,
                        title=title,
                        grades=f"{grade:02d}",
                        courseSourcedId=course_id,
                        classCode=f"{code}-{section}",
                        classType="scheduled",
                        schoolSourcedId=school_id,
                        termSourcedIds=",".join(terms),
                        subjects=subject,
                    )
                    classes.append((class_id, grade))
        written.classes += len(classes)
        teachers = []
        for t in range(max(1, -(-len(classes) // spec.classes_per_teacher))):
            person += 1
            uid, username = f"{p}-t-{s}-{t}", f"{p}.t{s}.{t}"
            add(
                "users",
                sourcedId=uid,
                enabledUser="true",
                orgSourcedIds=staff_orgs,
                role="teacher",
                username=username,
                givenName=GIVEN[person % len(GIVEN)],
                familyName=FAMILY[(person * 7) % len(FAMILY)],
                email=f"{username}@example.org",
            )
            teachers.append(uid)
        aides = []
        for a in range(spec.aides_per_school):
            person += 1
            uid = f"{p}-a-{s}-{a}"
            add(
                "users",
                sourcedId=uid,
                enabledUser="true",
                orgSourcedIds=school_id,
                role="aide",
                username=f"{p}.a{s}.{a}",
                givenName=GIVEN[person % len(GIVEN)],
                familyName=FAMILY[(person * 3) % len(FAMILY)],
            )
            aides.append(uid)
        for a in range(spec.administrators_per_school):
            person += 1
            add(
                "users",
                sourcedId=f"{p}-adm-{s}-{a}",
                enabledUser="true",
                orgSourcedIds=staff_orgs,
                role="administrator",
                username=f"{p}.adm{s}.{a}",
                givenName=GIVEN[person % len(GIVEN)],
                familyName=FAMILY[(person * 5) % len(FAMILY)],
            )
        enrollment = 0

        def enroll(
            class_id: str, user_id: str, role: str, primary: str = "false", *, s: int = s, school: str = school_id
        ) -> None:
            nonlocal enrollment
            enrollment += 1
            add(
                "enrollments",
                sourcedId=f"{p}-e-{s}-{enrollment}",
                classSourcedId=class_id,
                schoolSourcedId=school,
                userSourcedId=user_id,
                role=role,
                primary=primary,
            )

        for c, (class_id, _grade) in enumerate(classes):
            enroll(class_id, teachers[c // spec.classes_per_teacher], "teacher", "true")
            if aides and c % 3 == 0:
                enroll(class_id, aides[c % len(aides)], "aide")
        for grade in spec.grades:
            grade_classes = [cid for cid, g in classes if g == grade]
            for i in range(spec.students_per_grade):
                person += 1
                uid = f"{p}-s-{s}-{grade}-{i}"
                add(
                    "users",
                    sourcedId=uid,
                    enabledUser="true",
                    orgSourcedIds=school_id,
                    role="student",
                    username=f"{p}.s{s}.{grade}.{i}",
                    givenName=GIVEN[person % len(GIVEN)],
                    familyName=FAMILY[(person // len(GIVEN) + i) % len(FAMILY)],
                    grades=f"{grade:02d}",
                )
                birth_year = year - (grade + 6)
                add("demographics", sourcedId=uid, birthDate=f"{birth_year}-{1 + i % 12:02d}-{1 + i % 28:02d}")
                for n in range(spec.subjects_per_student):
                    enroll(grade_classes[n * sections + i % sections], uid, "student")
        written.enrollments += enrollment
    files["users"].extend(spec.extra_users)
    written.users = len(files["users"])
    return files, written


def _csv(header: list[str], rows: Iterable[dict[str, str]]) -> str:
    # Not `commonroom.csvfile.write_csv`: a bundle is an input format, read back by an import (ours
    # or another system's), so every value must arrive as written: a quote before a sourcedId or a
    # name that starts with "-" would change it. Its values are generated, not written by people.
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\r\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return "\ufeff" + buffer.getvalue()


def manifest(modes: dict[str, str]) -> str:
    pairs = [("manifest.version", "1.0"), ("oneroster.version", "1.1")]
    pairs += [(f"file.{name}", modes.get(name, "bulk")) for name in HEADERS]
    pairs += [("source.systemName", "Commonroom generator"), ("source.systemCode", "commonroom")]
    return _csv(["propertyName", "value"], [{"propertyName": k, "value": v} for k, v in pairs])


def write_bundle(target: Path, spec: RosterSpec) -> Written:
    """Write the bundle as a folder, or as a zip when `target` ends in .zip."""
    files, written = _rows(spec)
    contents = {f"{name}.csv": _csv(HEADERS[name], rows) for name, rows in files.items()}
    contents["manifest.csv"] = manifest({})
    if target.suffix == ".zip":
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, text in contents.items():
                archive.writestr(name, text.encode())
    else:
        target.mkdir(parents=True, exist_ok=True)
        for name, text in contents.items():
            (target / name).write_bytes(text.encode())
    return written
