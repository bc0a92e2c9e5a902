"""The append-only, hash-chained audit log.

Every event belongs to one chain: a school's (`school:<id>`) or, for actions
that belong to no school, the platform's (`platform`). Within a chain the
events are numbered by `seq` without gaps, and each stores the hash of the
event before it (`prev_hash`) and its own `hash` over a canonical encoding of
its fields (see `audit.chain`). Changing, removing, inserting or reordering an
event breaks the chain, which `manage.py audit_verify` detects.

The database refuses UPDATE, DELETE and TRUNCATE on the table (triggers made
by migration 0002), and this module refuses them in the ORM. Rows point at
people and schools with PROTECT: an event never disappears with what it is
about.

`AuditCheckpoint` keeps, just as append-only, the database's own record of the
signed checkpoints written outside it (see `audit.checkpoints`).
"""

from __future__ import annotations

from typing import Any, ClassVar, NoReturn

from django.conf import settings
from django.db import models
from django_scopes import ScopedManager

PLATFORM_CHAIN = "platform"


def chain_for_school(school_id: int | None) -> str:
    return f"school:{school_id}" if school_id is not None else PLATFORM_CHAIN


class AppendOnlyError(Exception):
    """An attempt to change or delete an audit event or checkpoint record."""


def _refuse(*args: Any, **kwargs: Any) -> NoReturn:
    raise AppendOnlyError("Audit records are append-only: they cannot be changed or deleted.")


class AppendOnlyQuerySet(models.QuerySet[Any]):
    """Rows that are added, never changed or deleted (the database's triggers refuse it too)."""

    update = _refuse
    delete = _refuse
    bulk_update = _refuse
    update_or_create = _refuse


_AppendOnlyManager = models.Manager.from_queryset(AppendOnlyQuerySet)


class AppendOnlyModel(models.Model):
    """A row is saved once and never changed or deleted (the database's triggers refuse it too)."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            _refuse()
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse()


class AuditEvent(AppendOnlyModel):
    """One thing that happened.

    - `chain`, `seq`: the chain this event belongs to and its position in it.
    - `created`: when it happened (UTC, microseconds; part of the hash).
    - `school`: the school it happened in (empty for platform actions).
    - `actor`: who did it (empty for the system itself); `actor_label` is their
      username at the time, kept as written even if the person changes later.
    - `action`: a stable dotted name, such as `roster.imported` or `enrollment.ended`.
    - `target_type`, `target_id`, `target_label`: what it was done to.
    - `payload`: the details, such as old and new values. Secret-looking keys are masked.
    - `prev_hash`, `hash`: the chain links (hex SHA-256).
    """

    chain = models.CharField(max_length=40)
    seq = models.PositiveBigIntegerField()
    created = models.DateTimeField()
    school = models.ForeignKey(
        "classes.School", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=255, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, db_index=True)

    objects: ClassVar[models.Manager[AuditEvent]] = ScopedManager(_manager_class=_AppendOnlyManager, school="school")
    all_chains: ClassVar[models.Manager[AuditEvent]] = _AppendOnlyManager()

    class Meta:
        ordering = ["chain", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["chain", "seq"], name="audit_event_unique_position"),
        ]
        indexes = [
            models.Index(fields=["school", "created"], name="audit_school_created"),
            models.Index(fields=["school", "action", "created"], name="audit_school_action_created"),
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
        ]

    def __str__(self) -> str:
        return f"{self.chain}#{self.seq} {self.action}"


class AuditChainHead(models.Model):
    """The last position and hash of each chain.

    Appending locks this row, so concurrent actions append one after the
    other instead of forking the chain. It also lets `audit_verify` notice
    events missing from the end of a chain.
    """

    chain = models.CharField(max_length=40, primary_key=True)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="")

    def __str__(self) -> str:
        return f"{self.chain} at {self.seq}"


class AuditCheckpoint(AppendOnlyModel):
    """A signed checkpoint of a chain, recorded in the database as `audit_checkpoint` writes it to the
    chain's checkpoint file.

    The file is the checkpoint that someone with database access cannot rewrite; this row is the record
    that someone who deletes the file cannot take back: append-only like the events (triggers made by
    migration 0003). A chain rewritten and its file deleted or cut short leaves these rows behind, so
    `audit_verify` sees a chain checkpointed more often than its file says, and positions whose hash
    is no longer the one signed.

    - `chain`, `seq`, `hash`: the chain's head when it was signed.
    - `written`: when it was signed (the `written` of the file's line).
    - `signature`: the line's signature (hex), so the row can be checked without the file.
    - `key`: the SHA-256 (hex) of the public key that verifies it. One key signs into one folder: a
      verifier with another key (a rotation, an old folder) leaves rows of other keys alone.
    """

    chain = models.CharField(max_length=40)
    seq = models.PositiveBigIntegerField()
    hash = models.CharField(max_length=64)
    written = models.DateTimeField()
    signature = models.CharField(max_length=128)
    key = models.CharField(max_length=64)

    objects: ClassVar[models.Manager[AuditCheckpoint]] = _AppendOnlyManager()

    class Meta:
        ordering = ["chain", "seq"]
        indexes = [models.Index(fields=["key", "chain", "seq"], name="audit_checkpoint_key_chain")]

    def __str__(self) -> str:
        return f"{self.chain} checkpoint at {self.seq}"
