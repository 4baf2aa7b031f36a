"""Tables of federation forwarding's shared state (issue 8; migration ``0008``).

Kept apart from :mod:`exchange.federation.models` (the background work's
tables, migration ``0007``); :func:`zhida.db.models.load_models` finds both.

``federation_replay``
    One row per accepted assertion ``jti`` (:class:`~exchange.federation.sql_replay.SqlReplayCache`)
    until the assertion expires; the primary key makes two workers racing on
    one ``jti`` agree on a single winner.
``federation_idempotency``
    One row per idempotency key being executed or answered
    (:class:`~exchange.federation.sql_idempotency.SqlIdempotencyStore`): the
    request digest, ``in_progress`` with the claim's ``lease_until`` or
    ``done`` with the stored ``response``, and when the row ``expires_at``.

Keys and ids longer than 64 characters are stored as ``sha256:<hex>`` (at
most 71 characters), so the columns stay bounded on PostgreSQL.

Example::

    from sqlalchemy import func, select

    from exchange.federation.store.models import IdempotencyRow

    with database.read() as conn:
        running = conn.scalar(
            select(func.count()).where(IdempotencyRow.state == "in_progress")
        )
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from zhida.db.base import Base, utcnow

__all__ = ["IdempotencyRow", "ReplayRow"]


class ReplayRow(Base):
    __tablename__ = "federation_replay"

    jti: Mapped[str] = mapped_column(String(80), primary_key=True)
    expires_at: Mapped[datetime]

    __table_args__ = (Index(None, "expires_at"),)


class IdempotencyRow(Base):
    __tablename__ = "federation_idempotency"

    scoped_key: Mapped[str] = mapped_column(String(80), primary_key=True)
    request_digest: Mapped[str] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(16))
    lease_until: Mapped[datetime]
    expires_at: Mapped[datetime]
    response: Mapped[bytes | None] = mapped_column(LargeBinary)
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("state IN ('in_progress', 'done')", name="state"),
        Index(None, "expires_at"),
    )
