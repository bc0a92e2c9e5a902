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
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.utils import timezone

from audit.models import AuditChainHead, AuditEvent


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


def write_checkpoints(chain_names: list[str], now: datetime | None = None) -> list[Checkpoint]:
    """Sign the head of each chain and append it to the chain's checkpoint file; return what was written.

    A chain whose head has not moved since its last checkpoint gets no new one."""
    key = private_key()
    written = (now or timezone.now()).astimezone(UTC).isoformat()
    folder().mkdir(parents=True, exist_ok=True)
    heads = dict(AuditChainHead.objects.filter(chain__in=chain_names).values_list("chain", "seq"))
    hashes = dict(AuditChainHead.objects.filter(chain__in=chain_names).values_list("chain", "hash"))
    done = []
    for chain in chain_names:
        seq = heads.get(chain, 0)
        if not seq:
            continue
        earlier = read_checkpoints(chain)
        if earlier and earlier[-1].seq == seq:
            continue
        unsigned = Checkpoint(chain, seq, hashes[chain], written)
        checkpoint = Checkpoint(chain, seq, hashes[chain], written, key.sign(unsigned.signed_bytes()).hex())
        with _file(chain).open("a", encoding="utf-8") as out:
            out.write(json.dumps(asdict(checkpoint), sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())
        done.append(checkpoint)
    return done


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
