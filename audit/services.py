"""Writing to the audit log and verifying it.

`record` and `record_many` are the only ways to append. They must run inside
the transaction of the action they record, so the action and its event commit
or fail together; they refuse to run outside one.

Appending locks the head of the school's chain until the transaction commits, so
every audited write of a school holds that one lock. Actions open their
transaction with `audited(school_id)`, which takes it first, before any other
row: with one lock order for all of them, two actions of a school can only ever
wait for each other, never deadlock (a report locking its case after the chain
while a case action locks the chain after the case, say). The roster import, which can take
seconds, takes it last so as not to hold up a school's conversations meanwhile; the one lock it
could share with them is a person's row (a suspension during the import), and PostgreSQL would end
that rare deadlock by failing one of the two, whole, with an error.
"""

from __future__ import annotations

import enum
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing import get_context
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Model
from django.utils import timezone

from audit.chain import GENESIS_HASH, clean_payload, event_hash, first_altered
from audit.models import AuditChainHead, AuditEvent, chain_for_school
from commonroom.db import insert_rows


class NotInTransactionError(RuntimeError):
    pass


@dataclass(frozen=True)
class Entry:
    """One event to append: the action, what it was done to, and its details."""

    action: str
    target_type: str = ""
    target_id: str = ""
    target_label: str = ""
    payload: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def about(
        cls, action: str, target: Model | None, payload: dict[str, Any] | None = None, label: str | None = None
    ) -> Entry:
        """An entry about a model instance; pass `label` where `str(target)` would query the database."""
        if target is None:
            return cls(action=action, target_label=label or "", payload=payload or {})
        meta = target._meta
        return cls(
            action=action,
            target_type=f"{meta.app_label}.{meta.model_name}",
            target_id=str(target.pk),
            target_label=(label if label is not None else str(target))[:255],
            payload=payload or {},
        )


_FIELDS = (
    "id",
    "chain",
    "seq",
    "created",
    "school_id",
    "actor_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "payload",
    "prev_hash",
    "hash",
)


def _lock_head(chain: str) -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(chain=chain).first()
    if head is None:
        try:
            with transaction.atomic():
                AuditChainHead.objects.create(chain=chain)
        except IntegrityError:
            pass  # created by a concurrent first append; lock that one
        head = AuditChainHead.objects.select_for_update().get(chain=chain)
    return head


class _Held(threading.local):
    """The chain heads this thread's `audited` blocks hold locked: chain -> (head, savepoint count).

    `record_many` appends with the held copy instead of locking and reading the head again, but only
    while no savepoint has been made since it was taken (Django counts them in `savepoint_state`): a
    savepoint may be rolled back with what was appended after it, so from then on the head is read
    from the database again."""

    def __init__(self) -> None:
        self.heads: dict[str, tuple[AuditChainHead, int]] = {}


_held = _Held()


@contextmanager
def audited(school_id: int | None) -> Iterator[None]:
    """A transaction for an action that records events in the chain of `school_id`: the chain's
    lock is its first lock (see the module's docstring)."""
    chain = chain_for_school(school_id)
    with transaction.atomic():
        if chain in _held.heads:  # an audited action inside another one: the lock is held already
            yield
            return
        _held.heads[chain] = (_lock_head(chain), connection.savepoint_state)
        try:
            yield
        finally:
            _held.heads.pop(chain, None)


def record_many(
    entries: Sequence[Entry],
    *,
    school_id: int | None,
    actor: Any = None,
    at: datetime | None = None,
    fetch: bool = True,
) -> list[AuditEvent]:
    """Append `entries`, in order, to the chain of `school_id` (None: the platform's).

    Returns the new events as stored, unless `fetch` is off (for large batches
    whose caller does not need them).
    """
    if not connection.in_atomic_block:
        raise NotInTransactionError("audit events must be recorded inside the transaction of the action they record")
    if not entries:
        return []
    chain = chain_for_school(school_id)
    created = at or timezone.now()
    actor_id = getattr(actor, "pk", None)
    actor_label = (getattr(actor, "username", "") or "")[:150] if actor_id is not None else ""
    held = _held.heads.get(chain)
    if held is not None and held[1] == connection.savepoint_state:
        head = held[0]
    else:
        head = _lock_head(chain)
        _held.heads.pop(chain, None)
    first_seq = head.seq + 1
    seq, prev = head.seq, head.hash or GENESIS_HASH
    rows = []
    for entry in entries:
        # Cut to the columns' sizes: a long class title must not fail the action it records.
        target_type, target_id, target_label = entry.target_type[:64], entry.target_id[:64], entry.target_label[:255]
        payload = clean_payload(entry.payload)
        digest = event_hash(
            chain=chain,
            created=created,
            school_id=school_id,
            actor_id=actor_id,
            actor_label=actor_label,
            action=entry.action,
            target_type=target_type,
            target_id=target_id,
            target_label=target_label,
            payload=payload,
            prev_hash=prev,
        )
        seq += 1
        row = (chain, seq, created, school_id, actor_id, actor_label, entry.action, target_type, target_id)
        rows.append((*row, target_label, payload, prev, digest))
        prev = digest
    insert_rows(AuditEvent, _FIELDS[1:], rows)
    AuditChainHead.objects.filter(chain=chain).update(seq=seq, hash=prev)
    head.seq, head.hash = seq, prev
    if not fetch:
        return []
    return list(AuditEvent.all_chains.filter(chain=chain, seq__gte=first_seq).order_by("seq"))


def record(
    action: str,
    *,
    school_id: int | None,
    actor: Any = None,
    target: Model | None = None,
    payload: dict[str, Any] | None = None,
    target_label: str | None = None,
    fetch: bool = False,
) -> AuditEvent | None:
    """Append one event (see `record_many`); with `fetch`, return it as stored."""
    entry = Entry.about(action, target, payload, label=target_label)
    events = record_many([entry], school_id=school_id, actor=actor, fetch=fetch)
    return events[0] if events else None


class Problem(enum.StrEnum):
    ALTERED = "altered"
    MISSING = "missing"
    INSERTED = "inserted"
    OUT_OF_ORDER = "out of order"


@dataclass(frozen=True)
class Finding:
    chain: str
    problem: Problem
    seq: int
    event_id: int | None
    detail: str

    def __str__(self) -> str:
        where = f"event {self.event_id} (position {self.seq})" if self.event_id is not None else f"position {self.seq}"
        return f"{self.chain}: {where} {self.problem.value}: {self.detail}"


@dataclass
class ChainReport:
    chain: str
    events: int
    finding: Finding | None

    @property
    def intact(self) -> bool:
        return self.finding is None


def _rows(chain: str) -> Iterator[tuple[Any, ...]]:
    """A chain's rows in order of position. On PostgreSQL, read with a server-side cursor and the payload
    left as text: parsing it is part of recomputing the hash, which `_Hasher` spreads over the cores."""
    if connection.vendor != "postgresql":
        yield from AuditEvent.all_chains.filter(chain=chain).order_by("seq").values_list(*_FIELDS).iterator(5000)
        return
    # The names in _FIELDS are the columns' names too. The time comes already in the hash's canonical
    # form (audit.chain.format_time), and the payload as text: the server does the converting.
    special = {
        "payload": "payload::text",
        "created": """to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')""",
    }
    columns = ", ".join(special.get(name, connection.ops.quote_name(name)) for name in _FIELDS)
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM audit_auditevent WHERE chain = %s ORDER BY seq", [chain])  # noqa: S608
        while rows := cursor.fetchmany(20_000):
            yield from rows


CHUNK = 10_000  # rows hashed at a time
PARALLEL_FROM = 50_000  # events: a shorter chain is faster in this process than by starting workers


class _Hasher:
    """Recomputes the hashes of a chain's rows a chunk at a time: in this process for a short chain, in a
    pool of worker processes (one per core) for a long one, while this process goes on reading rows.
    `first_altered()` answers the position in the chain of the first row whose content does not match its
    hash. Workers are spawned, not forked, so they never share this process's database connection."""

    def __init__(self, chain: str, parallel: bool) -> None:
        self.chain = chain
        self.pool: ProcessPoolExecutor | None = None
        if parallel:
            workers = max(1, (os.cpu_count() or 1) - 1)  # this process reads the rows meanwhile
            self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
        self.pending: list[tuple[int, Future[int | None]]] = []
        self.found: int | None = None  # the row number (from 0) of the first altered row, once known

    def add(self, start: int, rows: list[tuple[Any, ...]]) -> None:
        if self.pool is None:
            bad = first_altered(self.chain, rows)
            if bad is not None and self.found is None:
                self.found = start + bad
            return
        self.pending.append((start, self.pool.submit(first_altered, self.chain, rows)))

    def first_altered(self) -> int | None:
        for start, future in self.pending:  # in order: the first answer found is the earliest
            bad = future.result()
            if bad is not None:
                return start + bad
        return self.found

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def _broken_link(chain: str, seq: int, event_id: int, prev_hash: str, previous_seq: int) -> Finding:
    """Name what a link that does not point at the event before it means."""
    target = AuditEvent.all_chains.filter(chain=chain, hash=prev_hash).values_list("id", "seq").first()
    if target is None:
        return Finding(
            chain,
            Problem.MISSING,
            seq,
            event_id,
            "it follows an event that is not in the log: the one before it was rewritten, or one was removed here",
        )
    target_id, target_seq = target
    if target_seq > seq:
        return Finding(
            chain,
            Problem.OUT_OF_ORDER,
            seq,
            event_id,
            f"it follows event {target_id}, which is at position {target_seq}",
        )
    return Finding(
        chain,
        Problem.INSERTED,
        target_seq + 1,
        None,
        f"events at positions {target_seq + 1} to {previous_seq} were inserted before event {event_id}",
    )


def verify_chain(chain: str) -> ChainReport:
    """Recompute one chain and report the first problem, if any.

    Positions and links are checked here, row by row; the hashes of the rows' contents are recomputed by
    `_Hasher`, on every core for a long chain. A problem is reported at the first row where any check
    fails, in the order: position, content, link."""
    head = AuditChainHead.objects.filter(chain=chain).values_list("seq", flat=True).first() or 0
    hasher = _Hasher(chain, parallel=head >= PARALLEL_FROM)
    try:
        count, link_problem, last_seq, last_hash = _walk(chain, hasher)
        altered = hasher.first_altered()
    finally:
        hasher.close()
    # At the same row, a link is checked after the content (a row with a changed position is not hashed).
    if altered is not None and (link_problem is None or altered <= link_problem[0]):
        event_id, seq = _at_row(chain, altered)
        finding = Finding(chain, Problem.ALTERED, seq, event_id, "its content does not match its hash")
        return ChainReport(chain, altered + 1, finding)
    if link_problem is not None:
        return ChainReport(chain, link_problem[0] + 1, link_problem[1])
    return _check_head(chain, count, last_seq, last_hash)


def _at_row(chain: str, row: int) -> tuple[int, int]:
    """The id and position of the chain's row number `row` (from 0), in order of position."""
    found = AuditEvent.all_chains.filter(chain=chain).order_by("seq").values_list("id", "seq")[row]
    return int(found[0]), int(found[1])


def _walk(chain: str, hasher: _Hasher) -> tuple[int, tuple[int, Finding] | None, int, str]:
    """Read the chain in order, checking positions and links and handing rows to `hasher`.

    Answers how many rows were read, the first position or link problem (with its row number), and the last
    position and stored hash (for the head check)."""
    expected_seq = 1
    prev = GENESIS_HASH
    count = 0
    chunk: list[tuple[Any, ...]] = []
    for row in _rows(chain):
        event_id, seq, prev_hash, stored_hash = row[0], row[2], row[12], row[13]  # see _FIELDS
        if seq != expected_seq:
            finding = (
                Finding(chain, Problem.MISSING, expected_seq, None, f"positions {expected_seq} to {seq - 1} are gone")
                if prev_hash != prev
                else Finding(chain, Problem.ALTERED, seq, event_id, f"its position was changed from {expected_seq}")
            )
            _flush(hasher, count - len(chunk), chunk)
            return count + 1, (count, finding), expected_seq - 1, prev
        chunk.append(row)
        count += 1
        if prev_hash != prev:
            _flush(hasher, count - len(chunk), chunk)
            return count, (count - 1, _broken_link(chain, seq, event_id, prev_hash, seq - 1)), seq, stored_hash
        if len(chunk) >= CHUNK:
            _flush(hasher, count - len(chunk), chunk)
            chunk = []
        prev = stored_hash
        expected_seq += 1
    _flush(hasher, count - len(chunk), chunk)
    return count, None, expected_seq - 1, prev


def _flush(hasher: _Hasher, start: int, chunk: list[tuple[Any, ...]]) -> None:
    if chunk:
        hasher.add(start, chunk)


def _check_head(chain: str, count: int, last_seq: int, prev: str) -> ChainReport:
    """The chain read to its end without a problem: does the head agree with where it ended?"""
    head = AuditChainHead.objects.filter(chain=chain).values_list("seq", "hash").first()
    if head is None and count:
        return ChainReport(
            chain,
            count,
            Finding(chain, Problem.MISSING, last_seq + 1, None, "the record of the chain's last append is gone"),
        )
    if head is not None:
        head_seq, head_hash = head
        if head_seq > last_seq:
            return ChainReport(
                chain,
                count,
                Finding(chain, Problem.MISSING, last_seq + 1, None, f"positions {last_seq + 1} to {head_seq} are gone"),
            )
        if head_seq < last_seq or (head_seq and head_hash != prev):
            return ChainReport(
                chain,
                count,
                Finding(
                    chain,
                    Problem.INSERTED,
                    head_seq + 1,
                    None,
                    f"the log ends at position {last_seq}, after the last recorded append at {head_seq}",
                ),
            )
    return ChainReport(chain, count, None)


def chains(school_id: int | None = None) -> list[str]:
    if school_id is not None:
        return [chain_for_school(school_id)]
    names = set(AuditEvent.all_chains.values_list("chain", flat=True).distinct())
    names.update(AuditChainHead.objects.values_list("chain", flat=True))
    return sorted(names)


def verify(chain_names: Iterable[str]) -> list[ChainReport]:
    return [verify_chain(name) for name in chain_names]
