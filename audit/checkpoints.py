"""Signed checkpoints of the audit chains, kept outside the database.

The hash chain shows that no event was changed, removed or inserted, unless someone with database
access rewrites the whole chain from the altered event on, recomputing every hash. A checkpoint
closes that gap: once a day (`manage.py audit_checkpoint`, from cron) each chain's head, its
position and hash, is signed with an Ed25519 key that is not in the database and appended to a file
that is not in the database either. `audit_verify` then checks that every checkpointed position still
holds the hash that was signed. A rewritten chain no longer matches its checkpoints.

Files: one JSON line per checkpoint in COMMONROOM_CHECKPOINT_DIR/<chain>.jsonl (":" in a chain's name
becomes "-"). Keys: the private key (PEM, PKCS#8) at COMMONROOM_CHECKPOINT_KEY signs; verifying
needs only the public key, at COMMONROOM_CHECKPOINT_PUBLIC_KEY, or derived from the private key.

A file can be deleted, and a chain with no checkpoint file looks like one never checkpointed. So each
checkpoint is also recorded in the database (`AuditCheckpoint`, append-only), where rewriting the chain
does not reach it: `check_records` reports recorded checkpoints that the file lacks (and checks them
against the chain itself), and lines of the file that the database has no record of. Records belong
to the key that signed them: one key, one folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from audit.models import AuditChainHead, AuditCheckpoint, AuditEvent


class CheckpointError(Exception):
    """Checkpoints are not configured, or a key cannot be read."""


@dataclass(frozen=True)
class Checkpoint:
    chain: str
    seq: int
    hash: str
    written: str  # ISO 8601, UTC
    signature: str = ""  # hex

    def signed_bytes(self) -> bytes:
        """What the signature covers: the checkpoint without its signature, as canonical JSON."""
        body = {"chain": self.chain, "seq": self.seq, "hash": self.hash, "written": self.written}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class CheckpointFinding:
    chain: str
    seq: int
    detail: str

    def __str__(self) -> str:
        return f"{self.chain}: checkpoint at position {self.seq}: {self.detail}"


def folder() -> Path:
    return Path(settings.COMMONROOM_CHECKPOINT_DIR)


def _file(chain: str) -> Path:
    return folder() / f"{chain.replace(':', '-')}.jsonl"


def generate_key(path: Path) -> Ed25519PublicKey:
    """Write a new private key (readable by its owner only); refuse to replace one."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    public = key.public_key()
    public_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path.with_suffix(".pub").write_bytes(public_pem)
    return public


def private_key() -> Ed25519PrivateKey:
    path = settings.COMMONROOM_CHECKPOINT_KEY
    if not path:
        raise CheckpointError("COMMONROOM_CHECKPOINT_KEY is not set: there is no key to sign checkpoints with.")
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the checkpoint key at {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"the checkpoint key at {path} is not an Ed25519 key")
    return key


def public_key() -> Ed25519PublicKey:
    path = settings.COMMONROOM_CHECKPOINT_PUBLIC_KEY
    if not path:
        return private_key().public_key()
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the checkpoint public key at {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError(f"the checkpoint public key at {path} is not an Ed25519 key")
    return key


def fingerprint(key: Ed25519PublicKey) -> str:
    """The SHA-256 (hex) of a public key, naming the key that a checkpoint record belongs to."""
    return hashlib.sha256(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).hexdigest()


def write_checkpoints(chain_names: list[str], now: datetime | None = None) -> list[Checkpoint]:
    """Sign the head of each chain, record it in the database and append it to the chain's checkpoint
    file; return what was written.

    A chain whose head has not moved since its file's last checkpoint gets no new one. The record and
    the line go together: a line that cannot be written rolls its record back."""
    key = private_key()
    key_name = fingerprint(key.public_key())
    moment = (now or timezone.now()).astimezone(UTC)
    folder().mkdir(parents=True, exist_ok=True)
    heads = {chain: (seq, digest) for chain, seq, digest in _heads(chain_names)}
    done = []
    for chain in chain_names:
        seq, digest = heads.get(chain, (0, ""))
        if not seq:
            continue
        earlier = read_checkpoints(chain)
        if earlier and earlier[-1].seq == seq:
            continue
        unsigned = Checkpoint(chain, seq, digest, moment.isoformat())
        checkpoint = Checkpoint(chain, seq, digest, unsigned.written, key.sign(unsigned.signed_bytes()).hex())
        with transaction.atomic():
            AuditCheckpoint.objects.create(
                chain=chain, seq=seq, hash=digest, written=moment, signature=checkpoint.signature, key=key_name
            )
            _append(checkpoint)
        done.append(checkpoint)
    return done


def _heads(chain_names: list[str]) -> list[tuple[str, int, str]]:
    return list(AuditChainHead.objects.filter(chain__in=chain_names).values_list("chain", "seq", "hash"))


def _append(checkpoint: Checkpoint) -> None:
    with _file(checkpoint.chain).open("a", encoding="utf-8") as out:
        out.write(json.dumps(asdict(checkpoint), sort_keys=True) + "\n")
        out.flush()
        os.fsync(out.fileno())


def read_checkpoints(chain: str) -> list[Checkpoint]:
    path = _file(chain)
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            data = json.loads(line)
            found.append(
                Checkpoint(
                    chain=str(data["chain"]),
                    seq=int(data["seq"]),
                    hash=str(data["hash"]),
                    written=str(data["written"]),
                    signature=str(data["signature"]),
                )
            )
    return found


def check_chain(chain: str, key: Ed25519PublicKey) -> tuple[int, CheckpointFinding | None]:
    """Check a chain against its checkpoints: (how many were checked, the first problem or None)."""
    try:
        checkpoints = read_checkpoints(chain)
    except (ValueError, KeyError, TypeError) as exc:
        return 0, CheckpointFinding(chain, 0, f"the checkpoint file cannot be read ({exc})")
    if not checkpoints:
        return 0, None
    stored = dict(
        AuditEvent.all_chains.filter(chain=chain, seq__in=[c.seq for c in checkpoints]).values_list("seq", "hash")
    )
    for count, checkpoint in enumerate(checkpoints, start=1):
        if checkpoint.chain != chain:
            return count, CheckpointFinding(chain, checkpoint.seq, f"it names another chain ({checkpoint.chain})")
        try:
            key.verify(bytes.fromhex(checkpoint.signature), checkpoint.signed_bytes())
        except (InvalidSignature, ValueError):
            return count, CheckpointFinding(
                chain, checkpoint.seq, "its signature does not match: the checkpoint file was altered"
            )
        if checkpoint.seq not in stored:
            return count, CheckpointFinding(
                chain, checkpoint.seq, "that position is no longer in the log: events were removed"
            )
        if stored[checkpoint.seq] != checkpoint.hash:
            return count, CheckpointFinding(
                chain,
                checkpoint.seq,
                f"the log holds another event there than the one signed on {checkpoint.written}: "
                "the chain was rewritten",
            )
    return len(checkpoints), None


def check_records(chain: str, key: Ed25519PublicKey) -> list[CheckpointFinding]:
    """Check the database's record of a chain's checkpoints (those `key` verifies) against the checkpoint
    file and the chain; `check_chain` has checked the file's own lines.

    Found: recorded checkpoints that the file lacks (it was deleted, replaced or cut short), and among
    those the first one whose signature fails or whose position no longer holds the signed hash; and
    lines of the file that were written since checkpoints were recorded but have no record (the record
    was deleted, which the triggers refuse to anyone but the tables' owner)."""
    key_name = fingerprint(key)
    recorded = list(AuditCheckpoint.objects.filter(key=key_name, chain=chain).order_by("seq", "written"))
    try:
        in_file: list[Checkpoint] | None = read_checkpoints(chain)
    except (ValueError, KeyError, TypeError):
        in_file = None  # unreadable: `check_chain` says so; the records are checked against the chain alone
    filed = {(c.seq, c.hash) for c in in_file or []}
    unfiled = [r for r in recorded if (r.seq, r.hash) not in filed]
    findings = []
    if unfiled and in_file is not None:
        findings.append(_missing_from_file(chain, unfiled, len(recorded), exists=_file(chain).exists()))
    problem = _first_unfiled_problem(chain, unfiled, key)
    if problem is not None:
        findings.append(problem)
    unrecorded = _unrecorded(in_file or [], {(r.seq, r.hash) for r in recorded}, _recording_since(key_name))
    if unrecorded:
        first = unrecorded[0]
        findings.append(
            CheckpointFinding(
                chain,
                first.seq,
                f"the checkpoint file holds {len(unrecorded)} checkpoint(s) signed since the database records "
                f"checkpoints that it has no record of (the first of them signed on {first.written}): "
                "their records were deleted",
            )
        )
    return findings


def _when(record: AuditCheckpoint) -> str:
    """The record's `written` as the file's line and the signature have it."""
    return record.written.astimezone(UTC).isoformat()


def _missing_from_file(chain: str, unfiled: list[AuditCheckpoint], recorded: int, *, exists: bool) -> CheckpointFinding:
    if not exists:
        last = unfiled[-1]
        return CheckpointFinding(
            chain,
            last.seq,
            f"the checkpoint file is missing, but the database records {recorded} checkpoint(s) of this chain, "
            f"the last signed on {_when(last)}: the file was deleted",
        )
    first = unfiled[0]
    return CheckpointFinding(
        chain,
        first.seq,
        f"the checkpoint file lacks {len(unfiled)} of the {recorded} checkpoint(s) the database records (the first "
        f"of them signed on {_when(first)}): the file was replaced or cut short",
    )


def _first_unfiled_problem(
    chain: str, unfiled: list[AuditCheckpoint], key: Ed25519PublicKey
) -> CheckpointFinding | None:
    """Recorded checkpoints that the file lacks still vouch for the chain: the first one that no longer
    matches it (or was never signed), if any."""
    if not unfiled:
        return None
    seqs = AuditCheckpoint.objects.filter(key=unfiled[0].key, chain=chain).order_by().values("seq")
    stored = dict(AuditEvent.all_chains.filter(chain=chain, seq__in=seqs).values_list("seq", "hash"))
    for record in unfiled:
        signed = Checkpoint(record.chain, record.seq, record.hash, _when(record))
        try:
            key.verify(bytes.fromhex(record.signature), signed.signed_bytes())
        except (InvalidSignature, ValueError):
            return CheckpointFinding(
                chain, record.seq, "its record in the database has no valid signature: the record was forged"
            )
        if record.seq not in stored:
            return CheckpointFinding(
                chain,
                record.seq,
                "that position, recorded as checkpointed, is no longer in the log: events were removed",
            )
        if stored[record.seq] != record.hash:
            return CheckpointFinding(
                chain,
                record.seq,
                f"the log holds another event there than the one recorded as signed on {_when(record)}: "
                "the chain was rewritten",
            )
    return None


def _recording_since(key_name: str) -> datetime | None:
    """When the first checkpoint of this key was recorded: lines signed before then (before the records
    existed) have none."""
    earliest: datetime | None = AuditCheckpoint.objects.filter(key=key_name).aggregate(first=Min("written"))["first"]
    return earliest


def _unrecorded(in_file: list[Checkpoint], recorded: set[tuple[int, str]], since: datetime | None) -> list[Checkpoint]:
    if since is None:
        return []
    return [c for c in in_file if (c.seq, c.hash) not in recorded and _signed_at(c) >= since]


def _signed_at(checkpoint: Checkpoint) -> datetime:
    try:
        moment = datetime.fromisoformat(checkpoint.written)
    except ValueError:  # not as `write_checkpoints` writes it: its signature fails (`check_chain`)
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def checkpointed_chains(key: Ed25519PublicKey) -> set[str]:
    """The chains that have checkpoints, by the database's record (of this key) or by a file in the folder:
    a chain removed from the log entirely is still checked against them."""
    recorded = AuditCheckpoint.objects.filter(key=fingerprint(key)).order_by("chain")
    names = set(recorded.values_list("chain", flat=True).distinct())
    if folder().is_dir():
        # `_file` turns ":" into "-"; chain names ("platform", "school:<id>") hold no "-" of their own.
        names.update(path.stem.replace("-", ":") for path in folder().glob("*.jsonl"))
    return names
