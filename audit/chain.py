"""The canonical encoding and hash of an audit event.

The hash covers every field of an event except its database id and its
position (`seq`): the order of a chain is carried by the links, so that a
renumbering shows up as a broken link (missing, inserted, out of order)
rather than as every later event looking altered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

GENESIS_HASH = "0" * 64
ZERO = timedelta(0)

# Key fragments that mark a secret. ("session" alone is not one: rosters have academic sessions.)
SECRET_KEY_PARTS = (
    "password", "secret", "token", "api_key", "apikey", "credential", "private_key",
    "session_key", "sessionid", "cookie",
)  # fmt: skip
MASK = "********"


def clean_payload(value: Any, *, key: str = "") -> Any:
    """Make a payload JSON-exact and free of secrets.

    Values are reduced to what survives a round trip through every database's
    JSON column unchanged (strings, integers, booleans, null, lists, objects),
    so the hash computed now is the hash recomputed later.
    """
    if key and _secret(key):
        return MASK
    if type(value) is dict and all(type(v) in _PLAIN for v in value.values()):
        # The common case, a flat object of plain values, without the recursion.
        return {
            str(k): MASK if _secret(str(k)) else (v.replace("\x00", "\ufffd") if type(v) is str else v)
            for k, v in value.items()
        }
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, str):
            return value.replace("\x00", "\ufffd")
        return value
    if isinstance(value, Mapping):
        return {str(k): clean_payload(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [clean_payload(v) for v in items]
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (float, Decimal, UUID)):
        return str(value)
    return str(value)


_PLAIN = (str, int, bool, type(None))


def _secret(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def format_time(moment: datetime) -> str:
    """UTC to the microsecond, as "2026-11-23T09:15:02.120000Z"."""
    if moment.utcoffset() != ZERO:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def event_hash(
    *,
    chain: str,
    created: datetime | str,  # a time, or (from a verifier) the time already as format_time gives it
    school_id: int | None,
    actor_id: int | None,
    actor_label: str,
    action: str,
    target_type: str,
    target_id: str,
    target_label: str,
    payload: Any,
    prev_hash: str,
    fast: bool = False,
) -> str:
    document = {
        "chain": chain,
        "created": created if isinstance(created, str) else format_time(created),
        "school": school_id,
        "actor": actor_id,
        "actor_label": actor_label,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "target_label": target_label,
        "payload": payload,
        "prev": prev_hash,
    }
    return hashlib.sha256(_canonical(document) if not fast else _quick_canonical(document)).hexdigest()


def _canonical(document: dict[str, Any]) -> bytes:
    """The canonical encoding: JSON with sorted keys, no spaces, UTF-8. This is the definition."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _quick_canonical(document: dict[str, Any]) -> bytes:
    """The same bytes from orjson, several times faster, for verifying long chains. A verifier that finds
    a mismatch with it checks again with `_canonical` before saying an event was altered."""
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits, say
        return _canonical(document)


Row = tuple[Any, ...]  # (id, chain, seq, created, school_id, actor_id, actor_label, action, target_type,
#                        target_id, target_label, payload, prev_hash, hash), as `audit.services` reads them


def first_altered(chain: str, rows: list[Row]) -> int | None:
    """The index of the first row whose stored hash is not the hash of its content, or None. A payload may
    come as JSON text, as PostgreSQL gives it to the verifier.

    Pure, so that it can run in a worker process: verifying a long chain hashes its rows on every core."""
    for index, (_id, _chain, _seq, created, school_id, actor_id, actor_label, action, target_type, target_id,
                target_label, payload, prev_hash, stored_hash) in enumerate(rows):  # fmt: skip
        if isinstance(payload, str):
            try:
                payload = orjson.loads(payload)  # noqa: PLW2901
            except orjson.JSONDecodeError:
                payload = json.loads(payload)  # noqa: PLW2901
        fields = {
            "chain": chain,
            "created": created,
            "school_id": school_id,
            "actor_id": actor_id,
            "actor_label": actor_label,
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "target_label": target_label,
            "payload": payload,
            "prev_hash": prev_hash,
        }
        if event_hash(**fields, fast=True) != stored_hash and event_hash(**fields) != stored_hash:
            return index
    return None
