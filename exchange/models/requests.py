"""Tables of share requests and grants (SQLite and PostgreSQL; migration ``0005``).

``exchange_request``
    One row per share request (共享申请), keyed by its id: who asked whom for
    which items of which resource, why, on what legal basis and for which
    period; its state and the provider's decision (decider, time, reason,
    items and end granted, the grant it created). Items are JSON arrays in
    text columns. ``(provider_org, state, submitted_at, request_id)`` serves
    the pending queue (oldest first), ``(requester_org, submitted_at,
    request_id)`` a requester's own list.
``exchange_grant``
    One row per grant (授权), ``seq`` in creation order; ``version`` is the
    grant version (see below) of the grant's last write, so another process
    reads exactly the grants written since it last looked.
``exchange_feed``
    One row: ``grant_version``, bumped in the transaction of every grant
    write. Writers serialize on that row (SQLite: on the database lock), so
    versions commit in increasing order and a reader paging by version never
    skips a write. Created by the migration; writers only update it.

Example::

    from sqlalchemy import select

    from exchange.models.requests import GrantRow
    from zhida.db import Database

    with Database("sqlite:///.zhida/zhida.db").read() as conn:
        active = conn.execute(select(GrantRow.grant_id).where(GrantRow.state == "active")).all()
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zhida.db.base import Base

ROWID_BIGINT = BigInteger().with_variant(Integer(), "sqlite")
ID_LEN = 64  # request and grant ids (uuid4 hex today)
ORG_LEN = 64  # USCC (18) today; room for other principals' organisations
CODE_LEN = 40  # canonical resource code text, 1-01-001-0000-000001
SUBJECT_LEN = 256
FEED_ROW_ID = 1


class ShareRequestRow(Base):
    """A share request and, once decided, its decision."""

    __tablename__ = "exchange_request"

    request_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    requester_org: Mapped[str] = mapped_column(String(ORG_LEN))
    requester_region: Mapped[str] = mapped_column(String(12))
    requested_by: Mapped[str] = mapped_column(String(SUBJECT_LEN))
    resource_code: Mapped[str] = mapped_column(String(CODE_LEN))
    provider_org: Mapped[str] = mapped_column(String(ORG_LEN))
    items: Mapped[str] = mapped_column(Text)  # JSON array, in the order asked
    purpose: Mapped[str] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(Text)
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    expected_volume: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    submitted_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    withdrawn_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(SUBJECT_LEN))
    decided_at: Mapped[datetime | None]
    approved: Mapped[bool | None] = mapped_column(Boolean)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    items_granted: Mapped[str | None] = mapped_column(Text)  # JSON array, sorted
    until_granted: Mapped[datetime | None]
    grant_id: Mapped[str | None] = mapped_column(String(ID_LEN))

    __table_args__ = (
        Index(None, "provider_org", "state", "submitted_at", "request_id"),
        Index(None, "requester_org", "submitted_at", "request_id"),
    )


class GrantRow(Base):
    """A grant; ``state`` is the stored state (EXPIRED is derived from ``valid_until``)."""

    __tablename__ = "exchange_grant"

    seq: Mapped[int] = mapped_column(ROWID_BIGINT, primary_key=True, autoincrement=True)
    grant_id: Mapped[str] = mapped_column(String(ID_LEN), unique=True)
    request_id: Mapped[str] = mapped_column(String(ID_LEN))
    requester_org: Mapped[str] = mapped_column(String(ORG_LEN))
    provider_org: Mapped[str] = mapped_column(String(ORG_LEN))
    resource_code: Mapped[str] = mapped_column(String(CODE_LEN))
    items: Mapped[str] = mapped_column(Text)  # JSON array, sorted
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    purpose: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str] = mapped_column(String(SUBJECT_LEN))
    revoked_reason: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        Index(None, "requester_org", "seq"),
        Index(None, "provider_org", "seq"),
        Index(None, "version"),
    )


class ExchangeFeedRow(Base):
    """The single row grant writers lock: the last grant version."""

    __tablename__ = "exchange_feed"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    grant_version: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (CheckConstraint(f"id = {FEED_ROW_ID}", name="singleton"),)
