"""Benchmark: the safeguarding lead's search and the audit verification, at a million messages.

Creates a PostgreSQL database of its own (dropped afterwards), migrates it, and builds one school with
200 class rooms, 1,000 students, 1,000,000 messages and, for each, its `message.sent` audit event on
the school's hash chain (a valid chain, as the application writes it). Then:

- times 200 free-text searches for one and two words of varied frequency, through
  `moderation.review.search` (the first page of 50, newest first, recorded like any real look):
  median, 95th percentile, maximum;
- times `verify_chain` over the school's chain: events checked per second.

Prints a table and writes bench/results/review.json.

    .venv/bin/python bench/review_bench.py                      # 1,000,000 messages
    .venv/bin/python bench/review_bench.py --messages 100000    # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.scratch import scratch_database  # noqa: E402  (after the path)

RESULTS = ROOT / "bench" / "results"
ROOMS = 200
STUDENTS = 1000
CHUNK = 100_000
SEARCHES = 200

# Common words most messages use, and a long tail of rarer ones (as in real chat).
COMMON = (
    "the", "homework", "is", "due", "on", "friday", "can", "you", "help", "me", "with", "question", "page", "we",
    "have", "a", "test", "tomorrow", "what", "did", "get", "for", "number", "thanks", "see", "in", "class", "i",
    "forgot", "my", "book", "it", "at", "lunch", "or", "after", "school",
)  # fmt: skip
RARE = [f"{a}{b}" for a in ("bio", "geo", "chem", "hist", "lit", "math", "phys", "art", "mus", "lang")
        for b in ("logy", "graphy", "istry", "ory", "erature", "ematics", "ics", "work", "ic", "uage",
                  "project", "essay", "quiz", "lab", "trip", "notes", "revision", "poem", "map", "graph")]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="server URL (no database)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards (its name is printed)")
    args = parser.parse_args()
    with scratch_database(args.postgres, "commonroom_review_bench", keep=args.keep):
        os.environ.setdefault("SECRET_KEY", "benchmark-only")
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "commonroom.settings")
        os.environ.pop("REDIS_URL", None)
        run(args)


def sentence(rng: random.Random) -> str:
    words = [rng.choice(COMMON) for _ in range(rng.randint(4, 14))]
    for _ in range(rng.randint(0, 2)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(RARE))
    return " ".join(words)


def seed(count: int) -> tuple[Any, Any]:
    """The school, its people and rooms; then the messages and their audit events, a chunk at a time."""
    from django_scopes import scopes_disabled

    with scopes_disabled():
        return _seed(count)


def _seed(count: int) -> tuple[Any, Any]:
    from django.db import connection, transaction
    from django_scopes import scopes_disabled

    from audit.chain import event_hash
    from audit.models import AuditChainHead, AuditEvent, chain_for_school
    from classes.models import Cohort, Enrollment, School, SchoolClass, StaffRole, User
    from commonroom.db import insert_rows
    from messaging.models import Message, Room
    from messaging.rooms import sync_rooms

    with scopes_disabled(), transaction.atomic():
        school = School.objects.create(name="Bench School", sourced_id="bench-school", class_rooms_start_open=True)
        Cohort.objects.create(school=school, graduation_year=2027)
        lead = User.objects.create_user("bench.dsl", school=school, role=User.Role.STAFF)
        StaffRole.objects.create(school=school, user=lead, role=StaffRole.Role.SAFEGUARDING_LEAD)
        classes = SchoolClass.objects.bulk_create(
            SchoolClass(school=school, title=f"Class {n}", code=f"C{n}") for n in range(ROOMS)
        )
        students = User.objects.bulk_create(
            User(username=f"bench.s{n}", school=school, role=User.Role.STUDENT) for n in range(STUDENTS)
        )
        Enrollment.objects.bulk_create(
            Enrollment(school=school, school_class=classes[n % ROOMS], user=s, role=Enrollment.Role.STUDENT)
            for n, s in enumerate(students)
        )
        sync_rooms([school.pk])
    rooms = list(Room.objects.filter(school=school, school_class__isnull=False).values_list("pk", "school_class_id"))
    members: dict[int, list[User]] = {}
    by_class = {c.pk: [] for c in classes}  # type: dict[int, list[User]]
    for n, student in enumerate(students):
        by_class[classes[n % ROOMS].pk].append(student)
    for room_id, class_id in rooms:
        members[room_id] = by_class[class_id]

    chain = chain_for_school(school.pk)
    head = AuditChainHead.objects.get(chain=chain)
    seq, prev = head.seq, head.hash
    next_id = (Message.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    room_seq = dict.fromkeys(members, 0)
    rng = random.Random(11)
    moment = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)
    with connection.cursor() as cursor:  # a bulk load builds the search index once, afterwards
        cursor.execute("DROP INDEX IF EXISTS message_body_search")
    room_ids = list(members)
    made = 0
    while made < count:
        messages, events = [], []
        for _ in range(min(CHUNK, count - made)):
            room_id = rng.choice(room_ids)
            author = rng.choice(members[room_id])
            room_seq[room_id] += 1
            moment += timedelta(seconds=rng.randint(1, 40))
            body = sentence(rng)
            client_id = uuid.UUID(int=rng.getrandbits(128))
            messages.append(
                (next_id, school.pk, room_id, room_seq[room_id], author.pk, client_id, body, moment, "visible", "")
            )
            payload = {"room": room_id, "seq": room_seq[room_id], "body": body, "client_id": str(client_id),
                       "state": "visible", "screening": {"action": "allow", "reason": ""}}  # fmt: skip
            seq += 1
            digest = event_hash(
                chain=chain, created=moment, school_id=school.pk, actor_id=author.pk, actor_label=author.username,
                action="message.sent", target_type="messaging.message", target_id=str(next_id),
                target_label=f"room {room_id} #{room_seq[room_id]}", payload=payload, prev_hash=prev,
            )  # fmt: skip
            events.append((chain, seq, moment, school.pk, author.pk, author.username, "message.sent",
                           "messaging.message", str(next_id), f"room {room_id} #{room_seq[room_id]}", payload, prev,
                           digest))  # fmt: skip
            prev = digest
            next_id += 1
        with transaction.atomic():
            insert_rows(Message, ["id", "school_id", "room_id", "seq", "author_id", "client_id", "body", "created",
                                  "state", "removed_reason"], messages)  # fmt: skip
            insert_rows(AuditEvent, ["chain", "seq", "created", "school_id", "actor_id", "actor_label", "action",
                                     "target_type", "target_id", "target_label", "payload", "prev_hash", "hash"],
                        events)  # fmt: skip
        made += len(messages)
        print(f"  {made} messages", flush=True)
    with transaction.atomic():
        AuditChainHead.objects.filter(chain=chain).update(seq=seq, hash=prev)
        for room_id, last in room_seq.items():
            Room.objects.filter(pk=room_id).update(last_seq=last)
    with connection.cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('messaging_message', 'id'), %s)", [next_id - 1])
        started = time.perf_counter()
        cursor.execute(
            "CREATE INDEX message_body_search ON messaging_message "
            "USING gin (to_tsvector('english'::regconfig, COALESCE(body, '')))"
        )
        print(f"  search index built in {time.perf_counter() - started:.1f} s", flush=True)
        cursor.execute("ANALYZE")
    return school, lead


def run(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from audit.models import AuditEvent, chain_for_school
    from audit.services import verify_chain
    from moderation import review

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    school, lead = seed(args.messages)
    build_seconds = time.perf_counter() - started
    print(f"built in {build_seconds:.0f} s")

    rng = random.Random(5)
    queries = [rng.choice(RARE) for _ in range(SEARCHES // 2)] + [
        f"{rng.choice(COMMON)} {rng.choice(RARE)}" for _ in range(SEARCHES // 2)
    ]
    rng.shuffle(queries)
    reason = review.Reason("audit")
    for text in queries[:5]:  # warm the caches, as a server that has run a while would have them
        review.search(lead, reason, review.filters_from({"text": text}))
    timings = []
    found = []
    for text in queries:
        started = time.perf_counter()
        result = review.search(lead, reason, review.filters_from({"text": text}))
        timings.append((time.perf_counter() - started) * 1000)
        found.append(len(result.rows))
    timings.sort()

    chain = chain_for_school(school.pk)
    events = AuditEvent.all_chains.filter(chain=chain).count()
    started = time.perf_counter()
    report = verify_chain(chain)
    verify_seconds = time.perf_counter() - started

    figures = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": connection.vendor,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "messages": args.messages,
        "build_seconds": round(build_seconds, 1),
        "searches": len(queries),
        "search_median_ms": round(statistics.median(timings), 1),
        "search_p95_ms": round(timings[int(len(timings) * 0.95) - 1], 1),
        "search_max_ms": round(timings[-1], 1),
        "search_full_pages": sum(1 for n in found if n == review.PAGE),
        "audit_events": events,
        "audit_verify_seconds": round(verify_seconds, 2),
        "audit_verify_events_per_second": round(events / verify_seconds),
        "audit_intact": report.intact,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "review.json").write_text(json.dumps(figures, indent=2) + "\n")
    print()
    print(f"| {'figure':<32} | {'value':>14} |")
    print(f"|{'-' * 34}|{'-' * 16}|")
    for key, value in figures.items():
        print(f"| {key:<32} | {value!s:>14} |")
    print(f"\nwritten to {RESULTS / 'review.json'}")


if __name__ == "__main__":
    main()
