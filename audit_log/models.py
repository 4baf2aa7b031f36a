"""Tables of the audit log (SQLite and PostgreSQL; migration ``0002``).

``audit_event``
    One row per leaf: ``idx`` (the leaf index), ``leaf`` (the canonical event
    bytes, the only thing the tree commits to) and search columns copied from
    the event, each indexed together with ``idx`` so that a filtered search
    pages in log order without sorting. ``zhida audit verify`` re-derives the
    columns from ``leaf`` and reports a row whose columns were edited.
``audit_node``
    Every perfect-subtree hash the log ever completed, level 0 (leaf hashes)
    included, keyed by its flat in-order id (:func:`audit_log.hashes.flat_id`):
    exactly what inclusion and consistency proofs read. Keeping leaf hashes
    apart from the event rows is what lets verification tell an edited event
    (its bytes no longer hash to the stored leaf) from an edited node.
``audit_tree``
    One row: the tree size, its root and the serialised compact range, updated
    in the same transaction as the events and nodes it covers, so start-up and
    every batch read a few hundred bytes instead of rehashing.
``audit_checkpoint``
    Every signed checkpoint, keyed by tree size: the database refuses two
    checkpoints of one size, and :mod:`audit_log.sql` checks each new one
    against the last, in the same transaction.
``audit_witness``
    For a parent node witnessing its children: the last checkpoint it
    cosigned per child log origin, and the child's pinned verifier key.

Integer keys are ``INTEGER`` on SQLite so that they alias the rowid (one B-tree
per table instead of two) and ``BIGINT`` on PostgreSQL; flat node ids are below
``2 * size``, which bounds a log at 2**62 entries.

Example::

    from sqlalchemy import func, select

    from audit_log.models import AuditEventRow
    from zhida.db import Database

    with Database("sqlite:///.zhida/zhida.db").session() as s:
        print(s.scalar(select(func.count()).select_from(AuditEventRow)))
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zhida.db.base import Base, utcnow

ROWID_BIGINT = BigInteger().with_variant(Integer(), "sqlite")
TEXT_COLUMN = 512  # audit_log.events.MAX_FIELD_CHARS
TREE_ROW_ID = 1


class AuditEventRow(Base):
    """A log entry: its canonical bytes and indexed copies of its search fields."""

    __tablename__ = "audit_event"

    idx: Mapped[int] = mapped_column(ROWID_BIGINT, primary_key=True, autoincrement=False)
    leaf: Mapped[bytes] = mapped_column(LargeBinary)
    time: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    organisation: Mapped[str | None] = mapped_column(String(TEXT_COLUMN))
    subject: Mapped[str | None] = mapped_column(String(TEXT_COLUMN))
    resource: Mapped[str | None] = mapped_column(String(TEXT_COLUMN))
    licence_id: Mapped[str | None] = mapped_column(String(TEXT_COLUMN))
    holder_ref: Mapped[str | None] = mapped_column(String(64))

    # (column, idx): equality filter + log order served by one index. Action
    # and outcome have a handful of values; the primary key order serves them.
    __table_args__ = (
        Index(None, "organisation", "idx"),
        Index(None, "subject", "idx"),
        Index(None, "resource", "idx"),
        Index(None, "licence_id", "idx"),
        Index(None, "holder_ref", "idx"),
        Index(None, "time"),
    )


class AuditNodeRow(Base):
    """A perfect-subtree hash, keyed by its flat in-order id."""

    __tablename__ = "audit_node"

    id: Mapped[int] = mapped_column(ROWID_BIGINT, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditTreeRow(Base):
    """The log's current size, root and compact range (one row, id 1)."""

    __tablename__ = "audit_tree"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    state: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (CheckConstraint(f"id = {TREE_ROW_ID}", name="singleton"),)


class AuditCheckpointRow(Base):
    """A checkpoint the log signed; at most one per tree size."""

    __tablename__ = "audit_checkpoint"

    size: Mapped[int] = mapped_column(ROWID_BIGINT, primary_key=True, autoincrement=False)
    origin: Mapped[str] = mapped_column(String(256))
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditWitnessRow(Base):
    """The last checkpoint this node cosigned for one child log."""

    __tablename__ = "audit_witness"

    origin: Mapped[str] = mapped_column(String(256), primary_key=True)
    verifier_key: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
