"""Tables of the catalogue (SQLite and PostgreSQL; see :mod:`catalog_registry.sql`).

Resources are keyed by ``code_key``, the 16-digit integer form of the
resource code (:func:`catalog_registry.codec.code_key`), which sorts like the
canonical text, so keyset pagination "by code" is an integer range scan.

``catalog_resource``
    The current version of each resource: only the columns searches filter on
    (narrow rows keep scans over 100,000 resources cheap). On SQLite
    ``code_key`` is the rowid, so the table itself is in code order.
``catalog_resource_version``
    Every version's full snapshot as JSON (:mod:`catalog_registry.codec`):
    the history, and the data a search returns for its page.
``catalog_posting`` / ``catalog_gram``
    The keyword index: one posting per (gram, resource) for the grams of
    :func:`catalog_registry.text.search_grams`, and each gram's document
    frequency, kept in the same transaction, which lets a search start from
    its rarest grams. The postings are a clustered B-tree on SQLite
    (WITHOUT ROWID) and an index-only scan on PostgreSQL.
``catalog_change``
    The change feed: one row per resource write (or change of the resource's
    negative-list entries, pointing at its current version), its ``sequence``
    taken from ``catalog_feed`` in the writing transaction; ``(origin_region,
    origin_sequence)`` is unique, which is what makes imports idempotent.
``catalog_feed``
    One row: the last change sequence and the negative list's version.
    Every catalogue write updates it, so writers serialize on that row and
    sequences become visible in order (a reader never skips one).
``catalog_demand`` / ``catalog_negative_entry``
    The demand list (in filing order) and the negative list (in insertion
    order); an entry is unique per resource and exact tuple of item names.

Example::

    from sqlalchemy import func, select

    from catalog_registry.models import ResourceRow
    from zhida.db import Database

    with Database("sqlite:///.zhida/zhida.db").session() as s:
        print(s.scalar(select(func.count()).select_from(ResourceRow)))
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from zhida.db.base import Base

# INTEGER on SQLite so a single-column primary key aliases the rowid.
KEY = BigInteger().with_variant(Integer(), "sqlite")
GRAM_CHARS = 64  # longer grams (English "words" of 65+ letters) are stored hashed
FEED_ROW_ID = 1


class ResourceRow(Base):
    """Current version of a resource: search filters and the pointer to its snapshot."""

    __tablename__ = "catalog_resource"

    code_key: Mapped[int] = mapped_column(KEY, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    provider_code: Mapped[str] = mapped_column(String(18))
    region_code: Mapped[str] = mapped_column(String(6))
    level: Mapped[int] = mapped_column(SmallInteger)
    share_type: Mapped[str] = mapped_column(String(16))

    # (filter, code_key): an equality filter (or a region range) plus code order, so
    # a selective filter is counted and served from an index, never a table scan.
    __table_args__ = (
        Index(None, "provider_code", "code_key"),
        Index(None, "region_code", "code_key"),
        Index(None, "status", "code_key"),
        Index(None, "level", "code_key"),
        Index(None, "share_type", "code_key"),
    )


class ResourceVersionRow(Base):
    """One stored version of a resource, as JSON."""

    __tablename__ = "catalog_resource_version"

    code_key: Mapped[int] = mapped_column(KEY, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[str] = mapped_column(Text)

    __table_args__ = (ForeignKeyConstraint(["code_key"], ["catalog_resource.code_key"]),)


class PostingRow(Base):
    """Resource ``code_key`` has keyword gram ``gram`` (name, description or item names)."""

    __tablename__ = "catalog_posting"

    gram: Mapped[str] = mapped_column(String(GRAM_CHARS), primary_key=True)
    code_key: Mapped[int] = mapped_column(KEY, primary_key=True, autoincrement=False)

    __table_args__ = ({"sqlite_with_rowid": False},)


class GramRow(Base):
    """Document frequency of a gram: how many current resources have it."""

    __tablename__ = "catalog_gram"

    gram: Mapped[str] = mapped_column(String(GRAM_CHARS), primary_key=True)
    df: Mapped[int] = mapped_column(Integer)

    __table_args__ = ({"sqlite_with_rowid": False},)


class ChangeRow(Base):
    """One entry of the change feed."""

    __tablename__ = "catalog_change"

    sequence: Mapped[int] = mapped_column(KEY, primary_key=True, autoincrement=False)
    code_key: Mapped[int] = mapped_column(KEY)
    version: Mapped[int] = mapped_column(Integer)
    origin_region: Mapped[str | None] = mapped_column(String(6))
    origin_sequence: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("origin_region", "origin_sequence"),
        ForeignKeyConstraint(
            ["code_key", "version"],
            ["catalog_resource_version.code_key", "catalog_resource_version.version"],
        ),
        Index(None, "code_key", "sequence"),  # a resource's newest change (its origin)
    )


class FeedRow(Base):
    """The single row writers lock: last change sequence, negative-list version."""

    __tablename__ = "catalog_feed"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_sequence: Mapped[int] = mapped_column(BigInteger)
    negative_version: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (CheckConstraint(f"id = {FEED_ROW_ID}", name="singleton"),)


class DemandRow(Base):
    """A filed demand (需求清单 entry), as JSON."""

    __tablename__ = "catalog_demand"

    seq: Mapped[int] = mapped_column(KEY, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    requester_code: Mapped[str] = mapped_column(String(18))
    filed_at: Mapped[datetime]
    data: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index(None, "requester_code", "seq"),)


class NegativeEntryRow(Base):
    """A negative-list entry; ``items_key`` is the SHA-256 of the item-name tuple."""

    __tablename__ = "catalog_negative_entry"

    seq: Mapped[int] = mapped_column(KEY, primary_key=True, autoincrement=True)
    code_key: Mapped[int] = mapped_column(KEY)
    items_key: Mapped[str] = mapped_column(String(64))
    item_names: Mapped[str] = mapped_column(Text)  # JSON array
    legal_basis: Mapped[str] = mapped_column(Text)
    added_by: Mapped[str] = mapped_column(String(512))
    added_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("code_key", "items_key"),)
