"""Safeguarding review: only the safeguarding lead, only with a reason, every look recorded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_scopes import scopes_disabled

from audit.models import AuditEvent
from classes.models import User
from messaging import services
from messaging.models import Message, Room
from moderation import cases, review
from moderation.models import AccessRecord, Case
from tests.conftest import SchoolPeople, make_school

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # in the past: audit events are stamped with the real time
REASON = review.Reason("concern")


@pytest.fixture
def people(db: Any) -> SchoolPeople:
    return make_school("Review School", "r", open_class_rooms=True)


@pytest.fixture
def other(db: Any) -> SchoolPeople:
    return make_school("Other Review School", "q", open_class_rooms=True)


def class_room(people: SchoolPeople) -> Room:
    with scopes_disabled():
        return Room.objects.get(school_class=people.school_class)


def post(user: User, room: Room, body: str, now: datetime = NOON) -> Message:
    return services.send_message(user=user, room_id=room.pk, client_id=uuid.uuid4(), body=body, now=now).message


def client_for(user: User | None, reason: str | None = "concern") -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
        if reason is not None and review.may_review(user):
            assert client.post("/review/", {"reason": reason, "text": ""}).status_code == 302
    return client


PERSONAS = ("student", "other_student", "teacher", "other_teacher", "aide", "moderator", "admin")


def test_only_the_safeguarding_lead_reaches_the_review_pages(people: SchoolPeople, other: SchoolPeople) -> None:
    message = post(people.student, class_room(people), "hello")
    pages = [
        "/review/",
        "/review/search/?text=hello",
        f"/review/messages/{message.pk}/",
        f"/review/people/{people.student.pk}/",
        f"/review/people/{people.student.pk}/access/",
    ]
    for page in pages:
        assert client_for(people.safeguarding_lead).get(page).status_code == 200, page
        for name in PERSONAS:
            assert client_for(getattr(people, name)).get(page).status_code == 404, (name, page)
        # Another school's lead: the same answer as for something that does not exist.
        answer = client_for(other.safeguarding_lead).get(page)
        assert answer.status_code == (200 if page.startswith("/review/search") or page == "/review/" else 404), page
        assert client_for(None).get(page).status_code == 302  # to sign in
    found = client_for(other.safeguarding_lead).get("/review/search/?text=hello").content.decode()
    assert "Nothing matches." in found  # nothing crosses schools


def test_a_reason_comes_first_and_is_recorded_with_every_look(people: SchoolPeople) -> None:
    post(people.student, class_room(people), "the trip is on friday")
    client = client_for(people.safeguarding_lead, reason=None)
    answer = client.get("/review/search/?text=trip")
    assert answer.status_code == 302
    assert answer["Location"].startswith("/review/?next=")
    refused = client.post("/review/", {"reason": "other", "text": " "})
    assert "Say why you are looking." in refused.content.decode()
    client.post("/review/", {"reason": "other", "text": "Parent phoned about the trip"})
    assert "the trip is on friday" in client.get("/review/search/?text=trip").content.decode()
    with scopes_disabled():
        look = AccessRecord.objects.get()
        assert (look.reason, look.reason_text, look.kind) == ("other", "Parent phoned about the trip", "search")
        assert list(look.subjects.values_list("pk", flat=True)) == [people.student.pk]
        event = AuditEvent.objects.get(action="review.viewed")
    assert event.payload["reason_text"] == "Parent phoned about the trip"
    assert event.actor_id == people.safeguarding_lead.pk


def test_search_filters(people: SchoolPeople) -> None:
    room = class_room(people)
    post(people.student, room, "Bullying on the bus again", now=NOON - timedelta(days=3))
    post(people.teacher, room, "Please be kind on the bus", now=NOON - timedelta(days=1))
    flagged = post(people.student, room, "nobody likes you", now=NOON)
    lead = people.safeguarding_lead

    def bodies(**filters: str) -> list[str]:
        result = review.search(lead, REASON, review.filters_from(filters))
        return [message.body for message, _ in result.rows]

    assert bodies(text="bus") == ["Please be kind on the bus", "Bullying on the bus again"]  # newest first
    assert bodies(text="bus", person=str(people.student.pk)) == ["Bullying on the bus again"]
    assert bodies(category="bullying") == [flagged.body]
    day = (NOON - timedelta(days=1)).date().isoformat()
    assert bodies(**{"from": day, "to": day}) == ["Please be kind on the bus"]
    assert bodies(room=str(room.pk), text="kind") == ["Please be kind on the bus"]
    with pytest.raises(review.InvalidReview):
        review.filters_from({"from": "yesterday"})
    with pytest.raises(review.InvalidReview):
        review.filters_from({"person": "me"})


def test_search_pages_newest_first(people: SchoolPeople) -> None:
    room = class_room(people)
    for n in range(review.PAGE + 5):
        post(people.teacher, room, f"note {n}", now=NOON + timedelta(seconds=n))
    first = review.search(people.safeguarding_lead, REASON, review.filters_from({"text": "note"}))
    assert first.more
    assert first.rows[0][0].body == f"note {review.PAGE + 4}"
    second = review.search(people.safeguarding_lead, REASON, review.filters_from({"text": "note", "page": "2"}))
    assert [m.body for m, _ in second.rows] == [f"note {n}" for n in range(4, -1, -1)]
    assert not second.more


def test_a_chronology_and_who_looked(people: SchoolPeople) -> None:
    room = class_room(people)
    message = post(people.student, room, "nobody likes you", now=NOON)
    with scopes_disabled():
        case = Case.objects.get(message=message)
    services.mute(user=people.teacher, room_id=room.pk, student_id=people.student.pk, reason="Cool off", now=NOON)
    cases.take_action(user=people.teacher, case_id=case.pk, action="hide_message", reason="Unkind")
    cases.resolve(user=people.teacher, case_id=case.pk, outcome="spoken_to")
    person, entries = review.chronology(people.safeguarding_lead, REASON, people.student.pk)
    assert person == people.student
    what = [entry.what for entry in entries]
    assert what[0] == f"Case {case.pk} opened"
    assert {"Muted", "A message of theirs was removed by staff", f"Case {case.pk} resolved"} <= set(what)
    assert [entry.when for entry in entries] == sorted(entry.when for entry in entries)
    _, looks = review.who_looked(people.safeguarding_lead, review.Reason("audit"), people.student.pk)
    assert [(look.kind, look.reason) for look in looks] == [("chronology", "concern")]
    with pytest.raises(review.ReviewNotFound):
        review.chronology(people.moderator, REASON, people.student.pk)


def test_a_conversation_shows_every_version(people: SchoolPeople, other: SchoolPeople) -> None:
    room = class_room(people)
    message = post(people.student, room, "first words", now=timezone.now())
    services.edit_message(user=people.student, message_id=message.pk, body="second words")
    services.remove_message(user=people.student, message_id=message.pk)
    page = client_for(people.safeguarding_lead).get(f"/review/messages/{message.pk}/").content.decode()
    assert "first words" in page
    assert "second words" in page
    with pytest.raises(review.ReviewNotFound):
        review.message_in_context(other.safeguarding_lead, REASON, message.pk)


@pytest.mark.postgres
def test_full_text_search_uses_the_gin_index_on_postgresql(people: SchoolPeople) -> None:
    post(people.student, class_room(people), "We were bullied at lunch")
    result = review.search(people.safeguarding_lead, REASON, review.filters_from({"text": "bullying"}))
    assert [m.body for m, _ in result.rows] == ["We were bullied at lunch"]  # English stemming
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT id FROM messaging_message WHERE to_tsvector('english'::regconfig, COALESCE(body, '')) "
            "@@ websearch_to_tsquery('english', 'bully')"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET enable_seqscan = on")
    assert "message_body_search" in plan


def unzip(body: bytes) -> dict[str, bytes]:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def verify_export(body: bytes, tmp_path: Any) -> tuple[int, str]:
    from io import StringIO

    from django.core.management import call_command

    path = tmp_path / "export.zip"
    path.write_bytes(body)
    out, err = StringIO(), StringIO()
    try:
        call_command("audit_verify_export", str(path), stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), err.getvalue()
    return 0, out.getvalue()


class TestExports:
    def test_a_search_export_carries_a_manifest_that_verifies(self, people: SchoolPeople, tmp_path: Any) -> None:
        import csv
        import hashlib
        import io
        import json

        room = class_room(people)
        first = post(people.student, room, "the bus was late")
        post(people.teacher, room, "the bus leaves at four")
        answer = client_for(people.safeguarding_lead).get("/review/export/search/?text=bus&format=csv")
        assert answer.status_code == 200
        assert answer["Content-Type"] == "application/zip"
        files = unzip(answer.content)
        assert set(files) == {"search.csv", "manifest.json"}
        rows = list(csv.DictReader(io.StringIO(files["search.csv"].decode())))
        assert [row["body"] for row in rows] == ["the bus leaves at four", "the bus was late"]
        manifest = json.loads(files["manifest.json"])
        assert manifest["data_sha256"] == hashlib.sha256(files["search.csv"]).hexdigest()
        with scopes_disabled():
            sent = AuditEvent.objects.get(action="message.sent", target_id=str(first.pk))
            export_event = AuditEvent.objects.filter(action="review.viewed").latest("seq")
        assert {"seq": sent.seq, "hash": sent.hash} in [
            {"seq": e["seq"], "hash": e["hash"]} for e in manifest["events"]
        ]
        assert manifest["head"] == {"seq": export_event.seq, "hash": export_event.hash}  # the export's own event
        assert export_event.payload["kind"] == "export"
        assert verify_export(answer.content, tmp_path)[0] == 0

    def test_a_changed_export_or_a_rewritten_event_does_not_verify(self, people: SchoolPeople, tmp_path: Any) -> None:
        import io
        import zipfile

        from tests.test_audit import _raw

        message = post(people.student, class_room(people), "the bus was late")
        body = client_for(people.safeguarding_lead).get("/review/export/search/?text=bus&format=json").content
        files = unzip(body)
        changed = io.BytesIO()
        with zipfile.ZipFile(changed, "w") as archive:
            archive.writestr("search.json", files["search.json"].replace(b"late", b"early"))
            archive.writestr("manifest.json", files["manifest.json"])
        code, err = verify_export(changed.getvalue(), tmp_path)
        assert code == 1
        assert "search.json was changed after export" in err
        with scopes_disabled():
            sent = AuditEvent.objects.get(action="message.sent", target_id=str(message.pk))
        _raw("UPDATE audit_auditevent SET hash = %s WHERE id = %s", ["0" * 64, sent.pk])
        code, err = verify_export(body, tmp_path)
        assert code == 1
        assert "holds another event than the one exported" in err

    def test_a_case_as_a_pdf_and_a_chronology_as_json(self, people: SchoolPeople) -> None:
        import json

        message = post(people.student, class_room(people), "nobody likes you")
        with scopes_disabled():
            case = Case.objects.get(message=message)
        client = client_for(people.safeguarding_lead)
        pdf = unzip(client.get(f"/review/export/cases/{case.pk}/?format=pdf").content)
        assert pdf[f"case-{case.pk}.pdf"].startswith(b"%PDF")
        chronology = unzip(client.get(f"/review/export/people/{people.student.pk}/?format=json").content)
        records = json.loads(chronology["chronology.json"])["records"]
        assert records[0]["what"] == f"Case {case.pk} opened"
        assert client.get(f"/review/export/cases/{case.pk}/?format=docx").status_code == 400
        with scopes_disabled():
            kinds = list(AccessRecord.objects.filter(kind="export").values_list("query__export", flat=True))
        assert sorted(kinds) == ["case", "chronology"]

    def test_only_the_safeguarding_lead_exports(self, people: SchoolPeople, other: SchoolPeople) -> None:
        message = post(people.student, class_room(people), "nobody likes you")
        with scopes_disabled():
            case = Case.objects.get(message=message)
        pages = [
            "/review/export/search/?format=csv",
            f"/review/export/cases/{case.pk}/?format=pdf",
            f"/review/export/people/{people.student.pk}/?format=csv",
        ]
        for page in pages:
            for name in PERSONAS:  # the moderator handles the case, but does not export it
                assert client_for(getattr(people, name)).get(page).status_code == 404, (name, page)
        assert client_for(other.safeguarding_lead).get(pages[1]).status_code == 404
        assert client_for(other.safeguarding_lead).get(pages[2]).status_code == 404


def test_the_dashboard_counts_without_showing_messages(people: SchoolPeople) -> None:
    from moderation.dashboard import dashboard

    room = class_room(people)
    now = timezone.now()
    post(people.student, room, "nobody likes you", now=now - timedelta(days=8))
    second = post(people.student, room, "I want to die", now=now - timedelta(hours=1))
    with scopes_disabled():
        urgent = Case.objects.get(message=second)
    cases.acknowledge(user=people.safeguarding_lead, case_id=urgent.pk, now=urgent.level_since + timedelta(minutes=9))
    board = dashboard(people.safeguarding_lead, REASON, now=now)
    assert [(row["level"], row["count"]) for row in board["open_levels"]] == [(1, 1), (2, 0), (3, 1)]
    weekly = {bar.label: bar.value for bar in board["cases_chart"]["bars"]}
    assert (weekly["this week"], weekly["1 wk ago"]) == (1, 1)
    counts = dict(board["categories"])
    assert (counts["Bullying or harassment"], counts["Self-harm or suicide risk"]) == (1, 1)
    assert board["rooms"] == [(people.school_class.title, 2)]
    level_3 = board["acknowledge"][2]
    assert (level_3["cases"], level_3["median"], level_3["deadline"], level_3["late"]) == (1, 9.0, 5, 1)
    page = client_for(people.safeguarding_lead).get("/review/dashboard/").content.decode()
    assert "Cases opened per week" in page
    assert "I want to die" not in page
    assert client_for(people.moderator).get("/review/dashboard/").status_code == 404


def test_audit_events_are_searched_too(people: SchoolPeople, other: SchoolPeople) -> None:
    room = class_room(people)
    services.mute(user=people.teacher, room_id=room.pk, student_id=people.student.pk, reason="Shouting", now=NOON)
    services.lock_room(user=other.teacher, room_id=class_room(other).pk, reason="Shouting too", now=NOON)
    lead = people.safeguarding_lead
    found = review.search_events(lead, REASON, review.filters_from({"text": "shouting"}))
    assert [e.action for e in found.events] == ["student.muted"]  # this school's only
    about = review.search_events(lead, REASON, review.filters_from({"person": str(people.student.pk)}))
    assert "student.muted" in [e.action for e in about.events]
    rooms = review.search_events(lead, REASON, review.filters_from({"category": "room."}))
    assert all(e.action.startswith("room.") for e in rooms.events)
    in_room = review.search_events(lead, REASON, review.filters_from({"class": str(people.school_class.pk)}))
    assert "student.muted" in [e.action for e in in_room.events]
    elsewhere = review.search_events(lead, REASON, review.filters_from({"class": str(people.other_class.pk)}))
    assert "student.muted" not in [e.action for e in elsewhere.events]
    page = client_for(lead).get("/review/search/?in=events&text=shouting").content.decode()
    assert "student.muted" in page
    with scopes_disabled():
        look = AccessRecord.objects.filter(kind="event search").latest("created")
        assert people.student.pk in set(look.subjects.values_list("pk", flat=True))


class TestNothingAboutTheReviewerThemself:
    """Invariant 6 on the review pages: a case about the safeguarding lead (a member of staff, so it goes to
    the person the school names for allegations), the reports of the lead's own messages and the events of
    their cases are not shown to the lead anywhere: not in the event search, their chronology, the
    dashboard, the exports or who looked. The person named sees all of it."""

    NOTE = "Asked me to stay behind alone"

    @pytest.fixture
    def deputy(self, people: SchoolPeople) -> User:
        """A second safeguarding lead, named for allegations against staff."""
        from classes.models import CohortStaff, StaffRole
        from moderation.models import ModerationSettings

        with scopes_disabled():
            deputy = User.objects.create_user(
                "r.deputy", password="pw", school=people.school, role=User.Role.STAFF, given_name="Deputy"
            )
            StaffRole.objects.create(school=people.school, user=deputy, role=StaffRole.Role.SAFEGUARDING_LEAD)
            ModerationSettings.objects.create(school=people.school, allegations_contact=deputy)
            CohortStaff.objects.create(school=people.school, cohort=people.cohort, user=people.safeguarding_lead)
            CohortStaff.objects.create(school=people.school, cohort=people.cohort, user=people.teacher)
        return deputy

    @pytest.fixture
    def about_the_lead(self, people: SchoolPeople, deputy: User) -> tuple[Message, Case, Case]:
        """A student reports a message of the lead's (a case, `message.reported`, a report), and screening
        flags another (a case with a flag); the deputy handles the first."""
        with scopes_disabled():
            room = Room.objects.get(cohort=people.cohort)
        lead = people.safeguarding_lead
        reported = post(lead, room, "Stay behind after the assembly", now=timezone.now())
        services.report_message(user=people.student, message_id=reported.pk, category="inappropriate", note=self.NOTE)
        flagged = post(lead, room, "dm me about it", now=timezone.now())
        with scopes_disabled():
            first, second = Case.objects.get(message=reported), Case.objects.get(message=flagged)
        assert first.subject_id == second.subject_id == lead.pk
        assert first.staff_conduct
        assert second.staff_conduct
        cases.acknowledge(user=deputy, case_id=first.pk)
        cases.add_note(user=deputy, case_id=first.pk, text="Spoke to the student")
        return reported, first, second

    def test_the_event_search(self, people: SchoolPeople, deputy: User, about_the_lead: Any) -> None:
        reported, first, second = about_the_lead
        lead = people.safeguarding_lead
        theirs = {str(first.pk), str(second.pk)}

        def events(user: User, **filters: str) -> list[AuditEvent]:
            return review.search_events(user, REASON, review.filters_from(filters)).events

        def about_the_cases(found: list[AuditEvent]) -> list[str]:
            return [
                e.action
                for e in found
                if (e.target_type == "moderation.case" and e.target_id in theirs)
                or (e.action == "message.reported" and e.target_id == str(reported.pk))
            ]

        for filters in [{}, {"category": "case."}, {"category": "message."}, {"person": str(lead.pk)}]:
            assert about_the_cases(events(lead, **filters)) == [], filters
        assert events(lead, text="stay behind alone") == []
        assert events(lead, category="message.reported") == []
        # What is not about a case stays: the lead's own messages as sent.
        sent = [e.target_id for e in events(lead, category="message.sent", person=str(lead.pk))]
        assert str(reported.pk) in sent
        page = client_for(lead).get("/review/search/?in=events&text=stay+behind+alone").content.decode()
        assert self.NOTE not in page
        # The deputy sees all of it.
        seen = about_the_cases(events(deputy))
        assert {"case.opened", "case.acknowledged", "case.note_added", "message.reported"} <= set(seen)
        found = [e.action for e in events(deputy, text="stay behind alone") if e.action != "review.viewed"]
        assert found == ["case.opened", "message.reported"]

    def test_the_chronology(self, people: SchoolPeople, deputy: User, about_the_lead: Any) -> None:
        _, first, second = about_the_lead
        lead = people.safeguarding_lead
        _, entries = review.chronology(lead, REASON, lead.pk)
        what = [entry.what for entry in entries]
        assert not [w for w in what if w.startswith("Case ") or "reported" in w], what
        _, entries = review.chronology(deputy, REASON, lead.pk)
        what = [entry.what for entry in entries]
        assert {f"Case {first.pk} opened", f"Case {second.pk} opened", "A message of theirs was reported"} <= set(what)

    def test_the_dashboard(self, people: SchoolPeople, deputy: User, about_the_lead: Any) -> None:
        from moderation.dashboard import dashboard

        def counts(user: User) -> tuple[int, int, int, int, int, int]:
            board = dashboard(user, REASON)
            return (
                sum(row["count"] for row in board["open_levels"]),
                sum(bar.value for bar in board["cases_chart"]["bars"]),
                sum(bar.value for bar in board["flags_chart"]["bars"]),
                sum(count for _, count in board["categories"]),
                sum(count for _, count in board["rooms"]),
                sum(row["cases"] for row in board["acknowledge"]),
            )

        assert counts(people.safeguarding_lead) == (0, 0, 0, 0, 0, 0)
        assert counts(deputy) == (2, 2, 1, 2, 1, 1)

    def test_the_exports(self, people: SchoolPeople, deputy: User, about_the_lead: Any) -> None:
        import json

        reported, first, _ = about_the_lead
        lead = people.safeguarding_lead
        case_ids = {str(first.pk), str(about_the_lead[2].pk)}

        def export(user: User, page: str) -> tuple[list[dict[str, Any]], list[int]]:
            answer = client_for(user).get(page)
            assert answer.status_code == 200, page
            files = unzip(answer.content)
            name = next(name for name in files if name != "manifest.json")
            seqs = [event["seq"] for event in json.loads(files["manifest.json"])["events"]]
            return json.loads(files[name])["records"], seqs

        with scopes_disabled():
            case_seqs = set(
                AuditEvent.objects.filter(target_type="moderation.case", target_id__in=case_ids).values_list(
                    "seq", flat=True
                )
            )
        search = "/review/export/search/?category=inappropriate&format=json"
        chronology = f"/review/export/people/{lead.pk}/?format=json"
        assert export(lead, search)[0] == []
        rows, seqs = export(lead, chronology)
        assert not [row for row in rows if row["what"].startswith("Case ") or "reported" in row["what"]], rows
        assert not case_seqs & set(seqs)
        assert client_for(lead).get(f"/review/export/cases/{first.pk}/?format=json").status_code == 404
        # The deputy exports them.
        assert [row["id"] for row in export(deputy, search)[0]] == [reported.pk]
        rows, seqs = export(deputy, chronology)
        assert f"Case {first.pk} opened" in [row["what"] for row in rows]
        assert case_seqs & set(seqs)
        rows, _ = export(deputy, f"/review/export/cases/{first.pk}/?format=json")
        assert {"case", "report", "note", "history"} <= {row["section"] for row in rows}

    def test_the_search_by_category(self, people: SchoolPeople, deputy: User, about_the_lead: Any) -> None:
        reported = about_the_lead[0]

        def found(user: User) -> list[int]:
            result = review.search(user, REASON, review.filters_from({"category": "inappropriate"}))
            return [message.pk for message, _ in result.rows]

        assert found(people.safeguarding_lead) == []
        assert found(deputy) == [reported.pk]

    def test_who_looked(self, people: SchoolPeople, deputy: User, about_the_lead: Any) -> None:
        lead = people.safeguarding_lead
        review.chronology(deputy, review.Reason("allegation"), lead.pk)
        _, looks = review.who_looked(lead, REASON, lead.pk)
        assert [look.reviewer_id for look in looks] == []
        viewed = review.search_events(lead, REASON, review.filters_from({"category": "review.viewed"})).events
        assert deputy.pk not in [e.actor_id for e in viewed]
        assert review.search_events(lead, REASON, review.filters_from({"text": "allegation"})).events == []
        _, looks = review.who_looked(deputy, REASON, lead.pk)
        assert (deputy.pk, "allegation") in [(look.reviewer_id, look.reason) for look in looks]
