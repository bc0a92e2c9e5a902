"""Signed checkpoints: a chain rewritten end to end in the database no longer matches what was signed."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit import checkpoints
from audit.chain import event_hash
from audit.models import AppendOnlyError, AuditChainHead, AuditCheckpoint, AuditEvent, chain_for_school
from audit.services import verify_chain
from tests.conftest import SchoolPeople, audit_triggers_disabled, make_school
from tests.test_audit import _append, _raw, _verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def school(db: Any) -> SchoolPeople:
    return make_school("Checkpoint School", "k", rooms=False)


@pytest.fixture
def signing(tmp_path: Path, settings: Any) -> Path:
    key = tmp_path / "keys" / "checkpoint.pem"
    call_command("audit_checkpoint", "--generate-key", str(key), stdout=None)
    settings.COMMONROOM_CHECKPOINT_KEY = str(key)
    settings.COMMONROOM_CHECKPOINT_DIR = tmp_path / "checkpoints"
    return key


def rewrite_whole_chain(chain: str, seq: int, payload: dict[str, Any]) -> None:
    """What someone with database access would do: change one event and recompute every hash after it."""
    prev = None
    for event in AuditEvent.all_chains.filter(chain=chain).order_by("seq"):
        if prev is not None:
            event.prev_hash = prev
        if event.seq == seq:
            event.payload = payload
        event.hash = event_hash(
            chain=chain,
            created=event.created,
            school_id=event.school_id,
            actor_id=event.actor_id,
            actor_label=event.actor_label,
            action=event.action,
            target_type=event.target_type,
            target_id=event.target_id,
            target_label=event.target_label,
            payload=event.payload,
            prev_hash=event.prev_hash,
        )
        _raw(
            "UPDATE audit_auditevent SET payload = %s, prev_hash = %s, hash = %s WHERE id = %s",
            [json.dumps(event.payload), event.prev_hash, event.hash, event.pk],
        )
        prev = event.hash
    AuditChainHead.objects.filter(chain=chain).update(hash=prev)


def test_the_key_is_private_and_never_replaced(signing: Path) -> None:
    assert signing.stat().st_mode & 0o777 == 0o600
    assert signing.with_suffix(".pub").exists()
    with pytest.raises(CommandError):
        call_command("audit_checkpoint", "--generate-key", str(signing))


def test_an_intact_chain_matches_its_checkpoints(school: SchoolPeople, signing: Path) -> None:
    _append(school.school.pk, 5)
    assert len(checkpoints.write_checkpoints([chain_for_school(school.school.pk)])) == 1
    _append(school.school.pk, 3)
    # An unchanged head gets no second checkpoint; a moved one does.
    assert len(checkpoints.write_checkpoints([chain_for_school(school.school.pk)])) == 1
    assert checkpoints.write_checkpoints([chain_for_school(school.school.pk)]) == []
    code, out, _ = _verify("--school", str(school.school.pk))
    assert code == 0
    assert "matches 2 checkpoint(s)" in out


def test_a_whole_chain_rewritten_in_the_database_is_caught_by_its_checkpoint(
    school: SchoolPeople, signing: Path
) -> None:
    _append(school.school.pk, 6)
    chain = chain_for_school(school.school.pk)
    call_command("audit_checkpoint", stdout=None)
    rewrite_whole_chain(chain, 3, {"n": "nothing happened"})
    assert checkpoints.check_chain(chain, checkpoints.public_key())[1] is not None
    code, _, err = _verify()
    assert code == 1
    assert "the chain was rewritten" in err
    # Without the checkpoints the rewrite would pass: the hashes themselves are consistent.
    assert verify_chain(chain).intact


def test_a_chain_cut_short_below_a_checkpoint_is_caught(school: SchoolPeople, signing: Path) -> None:
    _append(school.school.pk, 6)
    chain = chain_for_school(school.school.pk)
    call_command("audit_checkpoint", stdout=None)
    _raw("DELETE FROM audit_auditevent WHERE chain = %s AND seq > 3", [chain])
    last = AuditEvent.all_chains.get(chain=chain, seq=3)
    AuditChainHead.objects.filter(chain=chain).update(seq=3, hash=last.hash)
    code, _, err = _verify()
    assert code == 1
    assert "events were removed" in err


def test_an_altered_checkpoint_file_is_caught(school: SchoolPeople, signing: Path, settings: Any) -> None:
    _append(school.school.pk, 4)
    chain = chain_for_school(school.school.pk)
    call_command("audit_checkpoint", stdout=None)
    path = Path(settings.COMMONROOM_CHECKPOINT_DIR) / f"{chain.replace(':', '-')}.jsonl"
    data = json.loads(path.read_text())
    data["seq"] = 2  # point the checkpoint somewhere else, keeping the signature
    data["hash"] = AuditEvent.all_chains.get(chain=chain, seq=2).hash
    path.write_text(json.dumps(data) + "\n")
    code, _, err = _verify()
    assert code == 1
    assert "signature does not match" in err


def test_verification_with_the_public_key_alone(school: SchoolPeople, signing: Path, settings: Any) -> None:
    _append(school.school.pk, 2)
    call_command("audit_checkpoint", stdout=None)
    settings.COMMONROOM_CHECKPOINT_KEY = ""
    settings.COMMONROOM_CHECKPOINT_PUBLIC_KEY = str(signing.with_suffix(".pub"))
    assert _verify()[0] == 0
    with pytest.raises(CommandError):  # signing needs the private key
        call_command("audit_checkpoint", stdout=None)


def test_a_configured_key_that_cannot_be_read_fails_verification(settings: Any, tmp_path: Path) -> None:
    settings.COMMONROOM_CHECKPOINT_KEY = str(tmp_path / "missing.pem")
    with pytest.raises(CommandError):
        _verify()


# The database's record of the checkpoints (AuditCheckpoint): what deleting a file cannot take back.


def _path(chain: str) -> Path:
    return checkpoints.folder() / f"{chain.replace(':', '-')}.jsonl"


@contextmanager
def checkpoint_triggers_disabled() -> Iterator[None]:
    """Get past the triggers on the checkpoint records, as the tables' owner or a superuser could."""
    if connection.vendor == "postgresql":
        with audit_triggers_disabled():  # session_replication_role: every trigger
            yield
        return
    migration = importlib.import_module("audit.migrations.0003_auditcheckpoint")
    with connection.cursor() as cursor:
        for statement in migration.SQLITE_REVERSE:
            cursor.execute(statement)
        try:
            yield
        finally:
            for statement in migration.SQLITE:
                cursor.execute(statement)


def test_each_checkpoint_is_recorded_in_the_database(school: SchoolPeople, signing: Path) -> None:
    _append(school.school.pk, 3)
    chain = chain_for_school(school.school.pk)
    (written,) = checkpoints.write_checkpoints([chain])
    (record,) = AuditCheckpoint.objects.filter(chain=chain)
    assert (record.seq, record.hash, record.signature) == (written.seq, written.hash, written.signature)
    assert record.written.astimezone(UTC).isoformat() == written.written
    assert record.key == checkpoints.fingerprint(checkpoints.public_key())
    assert checkpoints.read_checkpoints(chain) == [written]


def test_a_chain_rewritten_after_its_checkpoint_file_was_deleted_is_caught(school: SchoolPeople, signing: Path) -> None:
    _append(school.school.pk, 6)
    chain = chain_for_school(school.school.pk)
    call_command("audit_checkpoint", stdout=None)
    _path(chain).unlink()
    rewrite_whole_chain(chain, 3, {"n": "nothing happened"})
    # The chain and what is left of the files agree with each other: without the record, this passed.
    assert verify_chain(chain).intact
    assert checkpoints.check_chain(chain, checkpoints.public_key()) == (0, None)
    code, out, err = _verify()
    assert code == 1
    assert f"TAMPERED {chain}: checkpoint at position 6: the checkpoint file is missing, but the database" in err
    assert "the file was deleted" in err
    assert f"TAMPERED {chain}: checkpoint at position 6: the log holds another event there" in err
    assert "the chain was rewritten" in err
    assert f"{chain}: intact" not in out
    # The next daily checkpoint starts a new file, which vouches for the rewritten chain: still caught.
    _append(school.school.pk, 1)
    call_command("audit_checkpoint", stdout=None)
    code, _, err = _verify()
    assert code == 1
    assert "the checkpoint file lacks 1 of the 2 checkpoint(s) the database records" in err
    assert "the chain was rewritten" in err


def test_a_checkpoint_file_cut_short_is_caught(school: SchoolPeople, signing: Path) -> None:
    chain = chain_for_school(school.school.pk)
    _append(school.school.pk, 2)
    call_command("audit_checkpoint", stdout=None)
    _append(school.school.pk, 2)
    call_command("audit_checkpoint", stdout=None)
    assert _verify()[0] == 0
    first_line = _path(chain).read_text().splitlines()[0]
    _path(chain).write_text(first_line + "\n")
    code, _, err = _verify()
    assert code == 1
    assert f"TAMPERED {chain}: checkpoint at position 4: the checkpoint file lacks 1 of the 2" in err
    assert "the file was replaced or cut short" in err


def test_records_deleted_behind_a_file_are_caught(school: SchoolPeople, signing: Path) -> None:
    chain = chain_for_school(school.school.pk)
    _append(school.school.pk, 2)
    call_command("audit_checkpoint", stdout=None)
    _append(school.school.pk, 2)
    call_command("audit_checkpoint", stdout=None)
    with checkpoint_triggers_disabled(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditcheckpoint WHERE chain = %s AND seq = 4", [chain])
    code, _, err = _verify()
    assert code == 1
    assert f"TAMPERED {chain}: checkpoint at position 4: the checkpoint file holds 1 checkpoint(s)" in err
    assert "their records were deleted" in err


def test_a_forged_record_is_caught(school: SchoolPeople, signing: Path) -> None:
    chain = chain_for_school(school.school.pk)
    _append(school.school.pk, 3)
    call_command("audit_checkpoint", stdout=None)
    AuditCheckpoint.objects.create(
        chain=chain,
        seq=2,
        hash=AuditEvent.all_chains.get(chain=chain, seq=2).hash,
        written=datetime.now(UTC),
        signature="00" * 64,
        key=checkpoints.fingerprint(checkpoints.public_key()),
    )
    code, _, err = _verify()
    assert code == 1
    assert f"TAMPERED {chain}: checkpoint at position 2: its record in the database has no valid signature" in err


def test_lines_written_before_checkpoints_were_recorded_need_no_record(school: SchoolPeople, signing: Path) -> None:
    """An upgraded deployment's files hold lines from before the records existed."""
    chain = chain_for_school(school.school.pk)
    _append(school.school.pk, 2)
    head = AuditChainHead.objects.get(chain=chain)
    unsigned = checkpoints.Checkpoint(chain, head.seq, head.hash, "2026-01-05T02:15:00+00:00")
    signature = checkpoints.private_key().sign(unsigned.signed_bytes()).hex()
    checkpoints.folder().mkdir(parents=True)
    _path(chain).write_text(json.dumps({**asdict(unsigned), "signature": signature}) + "\n")
    code, out, _ = _verify()
    assert code == 0
    assert "matches 1 checkpoint(s)" in out
    _append(school.school.pk, 1)
    call_command("audit_checkpoint", stdout=None)  # the first recorded checkpoint, after the old line
    code, out, _ = _verify()
    assert code == 0
    assert "matches 2 checkpoint(s)" in out


def test_records_belong_to_the_key_that_signed_them(
    school: SchoolPeople, signing: Path, tmp_path: Path, settings: Any
) -> None:
    """A rotation starts a new folder with a new key: the old key's records are not looked for in it."""
    _append(school.school.pk, 2)
    call_command("audit_checkpoint", stdout=None)
    old_folder = settings.COMMONROOM_CHECKPOINT_DIR
    new_key = tmp_path / "keys" / "checkpoint-2027.pem"
    call_command("audit_checkpoint", "--generate-key", str(new_key), stdout=None)
    settings.COMMONROOM_CHECKPOINT_KEY = str(new_key)
    settings.COMMONROOM_CHECKPOINT_DIR = tmp_path / "checkpoints-2027"
    assert _verify()[0] == 0  # an empty new folder, no record of its key yet
    call_command("audit_checkpoint", stdout=None)
    _append(school.school.pk, 1)
    call_command("audit_checkpoint", stdout=None)
    code, out, _ = _verify()
    assert code == 0
    assert "matches 2 checkpoint(s)" in out
    settings.COMMONROOM_CHECKPOINT_KEY = ""
    settings.COMMONROOM_CHECKPOINT_PUBLIC_KEY = str(signing.with_suffix(".pub"))
    settings.COMMONROOM_CHECKPOINT_DIR = old_folder
    code, out, _ = _verify()
    assert code == 0
    assert "matches 1 checkpoint(s)" in out


def test_a_chain_removed_whole_is_still_checked(school: SchoolPeople, signing: Path) -> None:
    chain = chain_for_school(school.school.pk)
    _append(school.school.pk, 3)
    call_command("audit_checkpoint", stdout=None)
    _raw("DELETE FROM audit_auditevent WHERE chain = %s", [chain])
    AuditChainHead.objects.filter(chain=chain).delete()
    code, _, err = _verify()
    assert code == 1
    assert f"TAMPERED {chain}: checkpoint at position 3: that position is no longer in the log" in err
    _path(chain).unlink()
    code, _, err = _verify()
    assert code == 1
    assert f"TAMPERED {chain}: checkpoint at position 3: that position, recorded as checkpointed, is no longer" in err


class TestTheRecordIsAppendOnly:
    def test_the_orm_refuses_changes(self, school: SchoolPeople, signing: Path) -> None:
        _append(school.school.pk, 1)
        checkpoints.write_checkpoints([chain_for_school(school.school.pk)])
        record = AuditCheckpoint.objects.get()
        record.hash = "0" * 64
        with pytest.raises(AppendOnlyError):
            record.save()
        with pytest.raises(AppendOnlyError):
            record.delete()
        with pytest.raises(AppendOnlyError):
            AuditCheckpoint.objects.filter(pk=record.pk).update(hash="0" * 64)
        with pytest.raises(AppendOnlyError):
            AuditCheckpoint.objects.all().delete()

    @pytest.mark.parametrize(
        "sql", ["UPDATE audit_auditcheckpoint SET hash = 'forged'", "DELETE FROM audit_auditcheckpoint"]
    )
    def test_the_database_refuses_changes(self, school: SchoolPeople, signing: Path, sql: str) -> None:
        _append(school.school.pk, 1)
        (written,) = checkpoints.write_checkpoints([chain_for_school(school.school.pk)])
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
        assert list(AuditCheckpoint.objects.values_list("hash", flat=True)) == [written.hash]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_refuses_truncating_the_record(tmp_path: Path, settings: Any) -> None:
    AuditCheckpoint.objects.create(
        chain="platform", seq=1, hash="0" * 64, written=datetime.now(UTC), signature="", key=""
    )  # committed: no pending trigger events in the way
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE audit_auditcheckpoint")
    assert AuditCheckpoint.objects.count() == 1
