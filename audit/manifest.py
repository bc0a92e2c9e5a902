"""Manifests: what an export covers in the audit log, so that whoever receives it can check it.

An export is a ZIP holding one data file and `manifest.json`. The manifest names the school's chain,
the chain's head when the export was made (the export's own audit event), every audit event the
exported data comes from (its position and hash), and the SHA-256 of the data file.
`manage.py audit_verify_export FILE` checks a ZIP against the database: the data file is unchanged,
every event is still at its position with its hash, the head is still in the chain, and the chain
itself verifies (`audit_verify`, with its checkpoints).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from audit.models import AuditChainHead, AuditEvent

MANIFEST = "manifest.json"


def build(
    *, chain: str, events: Iterable[AuditEvent], data_name: str, data: bytes, about: dict[str, Any]
) -> dict[str, Any]:
    head = AuditChainHead.objects.filter(chain=chain).values_list("seq", "hash").first() or (0, "")
    covered = sorted({(e.seq, e.hash, e.action, f"{e.target_type}:{e.target_id}") for e in events if e.chain == chain})
    return {
        **about,
        "chain": chain,
        "head": {"seq": head[0], "hash": head[1]},
        "data_file": data_name,
        "data_sha256": hashlib.sha256(data).hexdigest(),
        "events": [
            {"seq": seq, "hash": digest, "action": action, "target": target} for seq, digest, action, target in covered
        ],
    }


def package(data_name: str, data: bytes, manifest: dict[str, Any]) -> bytes:
    """The export: a ZIP of the data file and its manifest."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(data_name, data)
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return out.getvalue()


@dataclass(frozen=True)
class Check:
    ok: bool
    problems: list[str]
    events: int


def check(export: bytes) -> Check:
    """Check an export against the audit log in the database (not the chain itself: see audit_verify)."""
    problems: list[str] = []
    try:
        with zipfile.ZipFile(io.BytesIO(export)) as archive:
            manifest = json.loads(archive.read(MANIFEST))
            data = archive.read(str(manifest["data_file"]))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        return Check(False, [f"not an export with a manifest: {exc}"], 0)
    if hashlib.sha256(data).hexdigest() != manifest.get("data_sha256"):
        problems.append(f"{manifest['data_file']} was changed after export")
    chain = str(manifest.get("chain", ""))
    wanted = {int(e["seq"]): str(e["hash"]) for e in manifest.get("events", [])}
    head = manifest.get("head", {})
    if head.get("seq"):
        wanted.setdefault(int(head["seq"]), str(head["hash"]))
    stored = dict(AuditEvent.all_chains.filter(chain=chain, seq__in=list(wanted)).values_list("seq", "hash"))
    for seq, digest in sorted(wanted.items()):
        if seq not in stored:
            problems.append(f"{chain} position {seq} is no longer in the audit log")
        elif stored[seq] != digest:
            problems.append(f"{chain} position {seq} holds another event than the one exported")
    return Check(not problems, problems, len(wanted))


def chain_of(export: bytes) -> str:
    """The chain an export's manifest names, or "" if it has no readable manifest."""
    try:
        with zipfile.ZipFile(io.BytesIO(export)) as archive:
            return str(json.loads(archive.read(MANIFEST)).get("chain", ""))
    except (zipfile.BadZipFile, KeyError, ValueError):
        return ""
