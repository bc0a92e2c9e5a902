"""Signed checkpoints: a chain rewritten end to end in the database no longer matches what was signed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from audit import checkpoints
from audit.chain import event_hash
from audit.models import AuditChainHead, AuditEvent, chain_for_school
from tests.conftest import SchoolPeople, make_school
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
    from audit.services import verify_chain

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
