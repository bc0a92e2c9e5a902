"""The audit log: append-only in the ORM and the database, hash-chained, and verified."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django_scopes import scopes_disabled

from audit.chain import MASK, event_hash
from audit.models import AppendOnlyError, AuditChainHead, AuditEvent, chain_for_school
from audit.services import Entry, NotInTransactionError, Problem, audited, record, record_many, verify_chain
from classes.models import School
from tests.conftest import SchoolPeople, audit_triggers_disabled, make_school


def _append(school_id: int | None, n: int, actor: Any = None) -> list[AuditEvent]:
    with transaction.atomic():
        return record_many(
            [Entry(action="test.happened", payload={"n": i}) for i in range(n)], school_id=school_id, actor=actor
        )


def _verify(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def _raw(sql: str, params: list[Any]) -> None:
    with audit_triggers_disabled(), connection.cursor() as cursor:
        cursor.execute(sql, params)


pytestmark = pytest.mark.django_db


# These tests count positions from the start of a chain: their schools start with no events.
@pytest.fixture
def school_a(db: Any) -> SchoolPeople:
    return make_school("Aston Grammar", "a", rooms=False)


@pytest.fixture
def school_b(db: Any) -> SchoolPeople:
    return make_school("Bexley High", "b", rooms=False)


def _record_then_fail(school: int) -> None:
    with transaction.atomic():
        record("test.undone", school_id=school)
        raise RuntimeError("roll this savepoint back")


class TestAppending:
    def test_events_form_a_chain_per_school(self, school_a: SchoolPeople, school_b: SchoolPeople) -> None:
        a = _append(school_a.school.pk, 3, actor=school_a.admin)
        b = _append(school_b.school.pk, 2)
        assert [e.seq for e in a] == [1, 2, 3]
        assert [e.seq for e in b] == [1, 2]
        assert a[0].prev_hash == "0" * 64
        assert a[1].prev_hash == a[0].hash
        assert a[2].prev_hash == a[1].hash
        assert {e.chain for e in a} == {chain_for_school(school_a.school.pk)}
        assert a[0].actor_label == school_a.admin.username
        head = AuditChainHead.objects.get(chain=chain_for_school(school_a.school.pk))
        assert (head.seq, head.hash) == (3, a[2].hash)

    def test_an_audited_action_locks_and_reads_the_head_once(self, school_a: SchoolPeople) -> None:
        chain = chain_for_school(school_a.school.pk)
        with transaction.atomic():
            record("test.zero", school_id=school_a.school.pk)  # the chain's first event makes its head
        before = AuditChainHead.objects.get(chain=chain).seq
        with CaptureQueriesContext(connection) as seen, audited(school_a.school.pk):
            record("test.one", school_id=school_a.school.pk)
            record("test.two", school_id=school_a.school.pk)
        reads = [q["sql"] for q in seen.captured_queries if 'FROM "audit_auditchainhead"' in q["sql"]]
        assert len(reads) == 1
        assert verify_chain(chain).intact
        assert AuditChainHead.objects.get(chain=chain).seq == before + 2

    def test_a_record_rolled_back_in_a_savepoint_does_not_fork_the_chain(self, school_a: SchoolPeople) -> None:
        """The head held by `audited` must not be trusted after a nested savepoint appended and rolled back."""
        school = school_a.school.pk
        with audited(school):
            record("test.kept", school_id=school)
            with pytest.raises(RuntimeError):
                _record_then_fail(school)
            savepoint = transaction.savepoint()  # and one made by hand
            record("test.undone too", school_id=school)
            transaction.savepoint_rollback(savepoint)
            record("test.after", school_id=school)
        chain = chain_for_school(school)
        tests = AuditEvent.all_chains.filter(chain=chain, action__startswith="test.").order_by("seq")
        assert list(tests.values_list("action", flat=True)) == [
            "test.kept",
            "test.after",
        ]
        assert verify_chain(chain).intact

    def test_the_hash_covers_the_fields(self, school_a: SchoolPeople) -> None:
        (event,) = _append(school_a.school.pk, 1, actor=school_a.admin)
        stored = AuditEvent.all_chains.get(pk=event.pk)
        fields = {
            "chain": stored.chain,
            "created": stored.created,
            "school_id": stored.school_id,
            "actor_id": stored.actor_id,
            "actor_label": stored.actor_label,
            "action": stored.action,
            "target_type": stored.target_type,
            "target_id": stored.target_id,
            "target_label": stored.target_label,
            "payload": stored.payload,
            "prev_hash": stored.prev_hash,
        }
        assert stored.hash == event_hash(**fields)
        others = {
            "chain": "school:999",
            "created": stored.created + timedelta(microseconds=1),
            "school_id": 999,
            "actor_id": 999,
            "actor_label": "someone",
            "action": "test.other",
            "target_type": "classes.user",
            "target_id": "999",
            "target_label": "someone else",
            "payload": {"n": 1},
            "prev_hash": "f" * 64,
        }
        assert set(others) == set(fields)  # every field the hash takes
        for name, other in others.items():
            assert event_hash(**{**fields, name: other}) != stored.hash, name

    def test_recording_outside_a_transaction_is_refused(self, school_a: SchoolPeople) -> None:
        # pytest-django wraps each test in a transaction; step outside it the way
        # a view running in autocommit mode would be.
        connection.in_atomic_block, saved = False, connection.in_atomic_block
        try:
            with pytest.raises(NotInTransactionError):
                record("test.happened", school_id=school_a.school.pk)
        finally:
            connection.in_atomic_block = saved

    def test_the_event_rolls_back_with_its_action(self, school_a: SchoolPeople) -> None:
        before = AuditEvent.all_chains.count()

        def failing_action() -> None:
            with transaction.atomic():
                record("test.happened", school_id=school_a.school.pk)
                raise RuntimeError("the action failed")

        with pytest.raises(RuntimeError):
            failing_action()
        assert AuditEvent.all_chains.count() == before
        assert verify_chain(chain_for_school(school_a.school.pk)).intact

    def test_secrets_are_masked_and_values_made_exact(self, school_a: SchoolPeople) -> None:
        with transaction.atomic():
            event = record(
                "test.happened",
                school_id=school_a.school.pk,
                payload={
                    "password": "hunter2",
                    "nested": {"api_token": "abc"},
                    "ratio": 0.5,
                    "when": school_a.year.start_date,
                },
                fetch=True,
            )
        assert event is not None
        stored = AuditEvent.all_chains.get(pk=event.pk)
        assert stored.payload == {"password": MASK, "nested": {"api_token": MASK}, "ratio": "0.5", "when": "2026-09-01"}
        assert verify_chain(stored.chain).intact

    def test_an_actor_who_is_disabled_stays_on_the_record(self, school_a: SchoolPeople) -> None:
        (event,) = _append(school_a.school.pk, 1, actor=school_a.teacher)
        school_a.teacher.enabled = False
        school_a.teacher.save()
        assert AuditEvent.all_chains.get(pk=event.pk).actor_id == school_a.teacher.pk
        with pytest.raises(DatabaseError), transaction.atomic():  # PROTECT: people with history are never deleted
            school_a.teacher.delete()


class TestAppendOnly:
    def test_the_orm_refuses_changes(self, school_a: SchoolPeople) -> None:
        (event,) = _append(school_a.school.pk, 1)
        event.action = "forged"
        with pytest.raises(AppendOnlyError):
            event.save()
        with pytest.raises(AppendOnlyError):
            event.delete()
        with pytest.raises(AppendOnlyError):
            AuditEvent.all_chains.filter(pk=event.pk).update(action="forged")
        with pytest.raises(AppendOnlyError):
            AuditEvent.all_chains.filter(pk=event.pk).delete()
        with pytest.raises(AppendOnlyError):
            AuditEvent.all_chains.bulk_update([event], ["action"])

    @pytest.mark.parametrize(
        "sql",
        ["UPDATE audit_auditevent SET action = 'forged'", "DELETE FROM audit_auditevent"],
    )
    def test_the_database_refuses_changes(self, school_a: SchoolPeople, sql: str) -> None:
        _append(school_a.school.pk, 2)
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
        assert AuditEvent.all_chains.filter(action="test.happened").count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_refuses_truncate() -> None:
    with scopes_disabled():
        school = School.objects.create(name="Truncate School")
    _append(school.pk, 1)  # committed: no pending trigger events in the way
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE audit_auditevent CASCADE")
    assert AuditEvent.all_chains.count() == 1


@pytest.fixture(params=["one process", "worker processes"])
def hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every verification test runs twice: hashing in this process, and in worker processes in chunks of
    three rows (as a long chain is verified), so both find the same first problem."""
    import audit.services

    if request.param == "worker processes":
        monkeypatch.setattr(audit.services, "PARALLEL_FROM", 1)
        monkeypatch.setattr(audit.services, "CHUNK", 3)
    return str(request.param)


@pytest.mark.usefixtures("hashing")
class TestVerify:
    def test_an_intact_log_passes(self, school_a: SchoolPeople, school_b: SchoolPeople) -> None:
        _append(school_a.school.pk, 5)
        _append(school_b.school.pk, 3)
        _append(None, 2)
        code, out, _ = _verify()
        assert code == 0
        assert f"school:{school_a.school.pk}: intact (5 events)" in out
        assert "platform: intact (2 events)" in out

    def _chain(self, school: SchoolPeople, n: int = 6) -> list[AuditEvent]:
        return _append(school.school.pk, n)

    def _expect(self, school: SchoolPeople, problem: Problem, seq: int, event_id: int | None = None) -> None:
        report = verify_chain(chain_for_school(school.school.pk))
        assert report.finding is not None, "tampering went unnoticed"
        assert report.finding.problem == problem
        assert report.finding.seq == seq
        if event_id is not None:
            assert report.finding.event_id == event_id
        code, _, err = _verify("--school", str(school.school.pk))
        assert code == 1
        assert f"TAMPERED school:{school.school.pk}" in err
        assert problem.value in err

    def test_an_altered_payload_is_found(self, school_a: SchoolPeople) -> None:
        events = self._chain(school_a)
        _raw("UPDATE audit_auditevent SET payload = %s WHERE id = %s", ['{"n": 99}', events[2].pk])
        self._expect(school_a, Problem.ALTERED, 3, events[2].pk)

    def test_an_altered_time_is_found(self, school_a: SchoolPeople) -> None:
        events = self._chain(school_a)
        _raw(
            "UPDATE audit_auditevent SET created = %s WHERE id = %s",
            [events[1].created - timedelta(days=1), events[1].pk],
        )
        self._expect(school_a, Problem.ALTERED, 2, events[1].pk)

    def test_a_rehashed_alteration_breaks_the_next_link(self, school_a: SchoolPeople) -> None:
        events = self._chain(school_a)
        forged = event_hash(
            chain=events[2].chain,
            created=events[2].created,
            school_id=events[2].school_id,
            actor_id=None,
            actor_label="",
            action="test.happened",
            target_type="",
            target_id="",
            target_label="",
            payload={"n": 99},
            prev_hash=events[2].prev_hash,
        )
        _raw("UPDATE audit_auditevent SET payload = %s, hash = %s WHERE id = %s", ['{"n": 99}', forged, events[2].pk])
        self._expect(school_a, Problem.MISSING, 4, events[3].pk)

    def test_a_removed_event_is_found(self, school_a: SchoolPeople) -> None:
        events = self._chain(school_a)
        _raw("DELETE FROM audit_auditevent WHERE id = %s", [events[2].pk])
        self._expect(school_a, Problem.MISSING, 3)

    def test_a_removed_and_renumbered_event_is_found(self, school_a: SchoolPeople) -> None:
        events = self._chain(school_a)
        _raw("DELETE FROM audit_auditevent WHERE id = %s", [events[2].pk])
        for event in events[3:]:
            _raw("UPDATE audit_auditevent SET seq = %s WHERE id = %s", [event.seq - 1, event.pk])
        self._expect(school_a, Problem.MISSING, 3, events[3].pk)

    def test_removed_events_at_the_end_are_found(self, school_a: SchoolPeople) -> None:
        events = self._chain(school_a)
        _raw("DELETE FROM audit_auditevent WHERE id IN (%s, %s)", [events[4].pk, events[5].pk])
        self._expect(school_a, Problem.MISSING, 5)

    def _forge_after(self, previous: AuditEvent, seq: int) -> None:
        """Insert a well-formed event (valid hash) after `previous`, as an attacker who knows the format could."""
        created = previous.created + timedelta(microseconds=1)
        digest = event_hash(
            chain=previous.chain,
            created=created,
            school_id=previous.school_id,
            actor_id=None,
            actor_label="",
            action="test.forged",
            target_type="",
            target_id="",
            target_label="",
            payload={},
            prev_hash=previous.hash,
        )
        _raw(
            "INSERT INTO audit_auditevent (chain, seq, created, school_id, actor_label, action, target_type, target_id, "
            "target_label, payload, prev_hash, hash) VALUES (%s, %s, %s, %s, '', 'test.forged', '', '', '', '{}', %s, %s)",
            [previous.chain, seq, created, previous.school_id, previous.hash, digest],
        )

    def test_an_inserted_event_is_found(self, school_a: SchoolPeople) -> None:
        events = self._chain(school_a)
        for event in reversed(events[2:]):  # make room at position 3
            _raw("UPDATE audit_auditevent SET seq = %s WHERE id = %s", [event.seq + 1, event.pk])
        self._forge_after(events[1], 3)
        self._expect(school_a, Problem.INSERTED, 3)

    def test_an_event_inserted_at_the_end_is_found(self, school_a: SchoolPeople) -> None:
        events = self._chain(school_a)
        self._forge_after(events[-1], len(events) + 1)
        self._expect(school_a, Problem.INSERTED, len(events) + 1)

    def test_events_out_of_order_are_found(self, school_a: SchoolPeople) -> None:
        events = self._chain(school_a)
        _raw("UPDATE audit_auditevent SET seq = %s WHERE id = %s", [1000, events[2].pk])
        _raw("UPDATE audit_auditevent SET seq = %s WHERE id = %s", [3, events[3].pk])
        _raw("UPDATE audit_auditevent SET seq = %s WHERE id = %s", [4, events[2].pk])
        self._expect(school_a, Problem.OUT_OF_ORDER, 3, events[3].pk)

    def test_other_schools_are_unaffected(self, school_a: SchoolPeople, school_b: SchoolPeople) -> None:
        events = self._chain(school_a)
        _append(school_b.school.pk, 3)
        _raw("DELETE FROM audit_auditevent WHERE id = %s", [events[0].pk])
        assert _verify("--school", str(school_b.school.pk))[0] == 0
        code, out, err = _verify()
        assert code == 1
        assert f"school:{school_b.school.pk}: intact" in out
        assert f"TAMPERED school:{school_a.school.pk}" in err


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_never_fork_the_chain() -> None:
    with scopes_disabled():
        school = School.objects.create(name="Concurrent School")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                with transaction.atomic():
                    record("test.concurrent", school_id=school.pk)
        except Exception as exc:  # noqa: BLE001  (collected and asserted on in the test)
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    report = verify_chain(chain_for_school(school.pk))
    assert report.intact, report.finding
    assert report.events == 80


def test_verify_names_a_missing_school() -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="no school with id 424242"):
        call_command("audit_verify", "--school", "424242")


def test_roster_words_are_not_mistaken_for_secrets() -> None:
    from audit.chain import clean_payload

    cleaned = clean_payload(
        {"sessions": 3, "modes": {"academicSessions": "bulk"}, "session_key": "abc", "csrf_cookie": "x"}
    )
    assert cleaned == {"sessions": 3, "modes": {"academicSessions": "bulk"}, "session_key": MASK, "csrf_cookie": MASK}


def test_the_quick_encoding_is_the_canonical_one() -> None:
    """Verification hashes with orjson; the definition is json.dumps. Over varied values (other scripts,
    control characters, nesting, large numbers) they give the same bytes."""
    import random
    import string

    from audit.chain import _canonical, _quick_canonical

    rng = random.Random(3)
    alphabet = string.printable + "\u00e9\u2028\u2029\x7f\x1f\u0430\U0001f600\ufffd\"\\/<>&'"

    def value(depth: int = 0) -> Any:
        kind = rng.randint(0, 6 if depth < 3 else 3)
        if kind == 0:
            return rng.choice([None, True, False])
        if kind == 1:
            return rng.choice([rng.randint(-(2**62), 2**62), 2**70])  # the last beyond orjson's integers
        if kind in (2, 3):
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        if kind == 4:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))): value(depth + 1) for _ in range(4)}

    for _ in range(20_000):
        document = {"payload": value(), "chain": "school:1"}
        assert _quick_canonical(document) == _canonical(document)
