"""Benchmark: import a generated OneRoster bundle of 50,000 users and 250,000 enrollments.

Writes the bundle, creates a database of its own (dropped afterwards), migrates
it, and times the first import and a second, unchanged import of the same
bundle, plus `audit_verify` over the events the import wrote. Prints a table
and writes bench/results/import.json.

    .venv/bin/python bench/import_bench.py                 # PostgreSQL on 127.0.0.1:5432
    .venv/bin/python bench/import_bench.py --sqlite        # the embedded default
    .venv/bin/python bench/import_bench.py --students-per-grade 100   # a quick run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.scratch import scratch_database  # noqa: E402  (after the path)

RESULTS = ROOT / "bench" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schools", type=int, default=10)
    parser.add_argument("--students-per-grade", type=int, default=810)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="server URL (no database)")
    parser.add_argument("--sqlite", action="store_true", help="use a SQLite file instead of PostgreSQL")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="commonroom-bench-"))
    with contextlib.ExitStack() as stack:
        if args.sqlite:
            os.environ["DATABASE_URL"] = f"sqlite:///{work / 'bench.sqlite3'}"
        else:
            stack.enter_context(scratch_database(args.postgres, "commonroom_bench"))
        os.environ.setdefault("SECRET_KEY", "benchmark-only")
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "commonroom.settings")
        os.environ.pop("REDIS_URL", None)
        run(args, work)


def run(args: argparse.Namespace, work: Path) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django_scopes import scopes_disabled

    from audit.models import AuditEvent
    from audit.services import chains, verify_chain
    from classes.models import Enrollment, User
    from classes.roster_import import import_bundle
    from classes.rostergen import RosterSpec, write_bundle

    call_command("migrate", verbosity=0)
    spec = RosterSpec(
        prefix="bench",
        school_names=[f"Bench School {i}" for i in range(args.schools)],
        year_end=2027,
        grades=(7, 8, 9, 10, 11, 12),
        students_per_grade=args.students_per_grade,
        subjects_per_student=5,
        class_size=30,
        classes_per_teacher=5,
        aides_per_school=1,
        administrators_per_school=1,
    )
    bundle = work / "bundle"
    started = time.perf_counter()
    written = write_bundle(bundle, spec)
    write_seconds = time.perf_counter() - started
    print(
        f"bundle: {written.users} users, {written.enrollments} enrollments, {written.classes} classes "
        f"({write_seconds:.1f} s)"
    )

    timings = {}
    for run_name in ("first import", "same bundle again"):
        started = time.perf_counter()
        result = import_bundle(bundle, source_name="benchmark", today=datetime(2026, 11, 2, tzinfo=UTC).date())
        timings[run_name] = time.perf_counter() - started
        created = sum(c["created"] for c in result.counts.values())
        print(f"{run_name}: {timings[run_name]:.1f} s ({created} created)")

    with scopes_disabled():
        users = User.objects.filter(sourced_id__startswith="bench-").count()
        enrollments = Enrollment.objects.count()
        events = AuditEvent.all_chains.count()
    started = time.perf_counter()
    intact = all(verify_chain(name).intact for name in chains())
    verify_seconds = time.perf_counter() - started

    figures = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": connection.vendor,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "users": users,
        "enrollments": enrollments,
        "classes": written.classes,
        "audit_events": events,
        "first_import_seconds": round(timings["first import"], 2),
        "unchanged_import_seconds": round(timings["same bundle again"], 2),
        "audit_verify_seconds": round(verify_seconds, 2),
        "audit_verify_events_per_second": round(events / verify_seconds) if verify_seconds else None,
        "audit_intact": intact,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "import.json" if connection.vendor == "postgresql" else f"import-{connection.vendor}.json"
    (RESULTS / name).write_text(json.dumps(figures, indent=2) + "\n")
    print()
    print(f"| {'figure':<34} | {'value':>12} |")
    print(f"|{'-' * 36}|{'-' * 14}|")
    for key, value in figures.items():
        print(f"| {key:<34} | {value!s:>12} |")
    print(f"\nwritten to {RESULTS / name}")


if __name__ == "__main__":
    main()
