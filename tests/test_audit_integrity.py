"""`audit_verify` checks the messages as stored against the audit log: a text, room or position changed
in the database, a message added or deleted there, is named; what the services do passes."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_scopes import scopes_disabled

from audit.models import AuditEvent, chain_for_school
from audit.records import RecordFinding
from messaging import services
from messaging.integrity import check_message_bodies
from messaging.models import Message, Room
from tests.conftest import SchoolPeople, make_school
from tests.test_audit import _verify
from tests.test_messaging_services import send
from tests.test_policy import NOON, class_room, open_room

pytestmark = pytest.mark.django_db

CHECK = "messaging.integrity.check_message_bodies"


@pytest.fixture
def room(school_a: SchoolPeople) -> Room:
    return open_room(class_room(school_a))


def _sql(statement: str, params: list[Any]) -> None:
    """What someone with database access would do; messages have no trigger to get past."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def _name(message: Message) -> str:
    return f"{chain_for_school(message.school_id)}: message {message.pk} (room {message.room_id} #{message.seq})"


def _findings(school_id: int | None = None) -> list[RecordFinding]:
    found: list[RecordFinding] = []
    check_message_bodies(school_id, found.append)
    return found


def test_messages_sent_edited_and_removed_through_the_services_pass(school_a: SchoolPeople, room: Room) -> None:
    first = send(school_a, body="first draft").message
    services.edit_message(user=school_a.student, message_id=first.pk, body="second draft", now=NOON)
    services.edit_message(user=school_a.student, message_id=first.pk, body="final text", now=NOON)
    removed = send(school_a, "teacher", "gone soon").message
    services.remove_message(user=school_a.teacher, message_id=removed.pk, now=NOON + timedelta(minutes=1))
    send(school_a, body="Ünïcödé 😀 and\ta tab")
    code, out, err = _verify()
    assert (code, err) == (0, "")
    assert f"{CHECK}: 3 record(s) match the audit log" in out


def test_a_body_changed_in_the_database_is_named(school_a: SchoolPeople, room: Room) -> None:
    kept = send(school_a, body="kept as written").message
    message = send(school_a, body="what was said").message
    services.edit_message(user=school_a.student, message_id=message.pk, body="what was said, edited", now=NOON)
    assert _verify()[0] == 0
    _sql("UPDATE messaging_message SET body = %s WHERE id = %s", ["words put in a child's mouth", message.pk])
    code, out, err = _verify()
    assert code == 1
    assert f"TAMPERED {_name(message)}: its text differs from the last version the audit log recorded" in err
    assert "message.edited" in err
    assert f"message {kept.pk} " not in err
    assert "words put in" not in err + out  # a finding names the message, never its text
    assert f"{CHECK}: 1 finding(s) in 2 record(s) checked" in err
    assert f"{chain_for_school(school_a.school.pk)}: intact" in out  # the log itself was not touched


def test_a_message_moved_to_another_place_is_named(school_a: SchoolPeople, room: Room) -> None:
    message = send(school_a, body="said here").message
    other = open_room(class_room(school_a, "other_class"))
    _sql("UPDATE messaging_message SET room_id = %s, seq = %s WHERE id = %s", [other.pk, 7, message.pk])
    with scopes_disabled():
        message.refresh_from_db()
    (finding,) = _findings()
    assert str(finding).startswith(_name(message))
    assert "its room and position in its room differ" in finding.detail


def test_a_message_added_or_deleted_in_the_database_is_named(school_a: SchoolPeople, room: Room) -> None:
    deleted = send(school_a, body="said, then deleted by hand").message
    with scopes_disabled():
        added = Message.objects.create(
            school=school_a.school, room=room, seq=99, author=school_a.teacher, client_id=uuid.uuid4(),
            body="never said", created=NOON,
        )  # fmt: skip
    _sql("DELETE FROM messaging_message WHERE id = %s", [deleted.pk])
    found = sorted(str(finding) for finding in _findings())
    assert found == sorted(
        [
            f"{_name(added)}: the audit log has no version of it: it was added outside Commonroom, or its events "
            "were removed",
            f"{chain_for_school(school_a.school.pk)}: message {deleted.pk} (room {room.pk} #{deleted.seq}): "
            "the audit log records it (message.sent, event "
            + _event_words(deleted)
            + "), but it is no longer stored: it was deleted outside Commonroom",
        ]
    )
    assert _verify()[0] == 1


def _event_words(message: Message) -> str:
    event = AuditEvent.all_chains.get(action="message.sent", target_id=str(message.pk))
    return f"{event.pk} at position {event.seq}"


def test_a_school_is_checked_alone(school_a: SchoolPeople, school_b: SchoolPeople, room: Room) -> None:
    open_room(class_room(school_b))
    theirs = send(school_b, body="in school b").message
    send(school_a, body="in school a")
    _sql("UPDATE messaging_message SET body = %s WHERE id = %s", ["altered", theirs.pk])
    code, out, _ = _verify("--school", str(school_a.school.pk))
    assert code == 0
    assert f"{CHECK}: 1 record(s) match the audit log" in out
    code, _, err = _verify("--school", str(school_b.school.pk))
    assert code == 1
    assert _name(theirs) in err


def test_the_check_reads_in_one_pass_with_no_query_per_message(
    school_a: SchoolPeople, room: Room, monkeypatch: pytest.MonkeyPatch
) -> None:
    import messaging.integrity

    monkeypatch.setattr(messaging.integrity, "CHUNK", 2)  # several chunks of each stream
    send(school_a, body="one")

    def queries() -> int:
        with CaptureQueriesContext(connection) as seen:
            assert _findings(school_a.school.pk) == []
        return len(seen.captured_queries)

    few = queries()
    for n in range(12):
        message = send(school_a, body=f"message {n}").message
        services.edit_message(user=school_a.student, message_id=message.pk, body=f"message {n}, edited", now=NOON)
    assert queries() == few


def test_many_findings_are_counted_beyond_those_written(
    school_a: SchoolPeople, room: Room, monkeypatch: pytest.MonkeyPatch
) -> None:
    import audit.management.commands.audit_verify as command

    monkeypatch.setattr(command, "SHOWN", 2)
    for n in range(5):
        send(school_a, body=f"message {n}")
    _sql("UPDATE messaging_message SET body = 'altered' WHERE school_id = %s", [school_a.school.pk])
    code, _, err = _verify()
    assert code == 1
    assert err.count("its text differs") == 2
    assert f"TAMPERED {CHECK}: 3 more finding(s) not shown" in err
    assert f"{CHECK}: 5 finding(s) in 5 record(s) checked" in err


def test_the_checks_are_the_ones_settings_name(school_a: SchoolPeople, room: Room, settings: Any) -> None:
    message = send(school_a, body="hello").message
    _sql("UPDATE messaging_message SET body = %s WHERE id = %s", ["altered", message.pk])
    settings.COMMONROOM_RECORD_CHECKS = []
    assert _verify()[0] == 0
    settings.COMMONROOM_RECORD_CHECKS = [CHECK]
    assert _verify()[0] == 1


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_check_reads_one_snapshot_of_its_own() -> None:
    """As `audit_verify` runs it: no caller's transaction, so the check opens its own (REPEATABLE READ on
    PostgreSQL) for each school's two streams."""
    people = make_school("Snapshot School", "s")
    open_room(class_room(people))
    message = send(people, body="as written").message
    assert not connection.in_atomic_block
    assert _findings() == []
    _sql("UPDATE messaging_message SET body = %s WHERE id = %s", ["altered", message.pk])
    (finding,) = _findings(people.school.pk)
    assert str(finding).startswith(_name(message))
