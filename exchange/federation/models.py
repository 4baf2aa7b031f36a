"""Tables of the federation (issue 8; migration ``0007``).

``federation_licence_index``
    The licence index of this node's subtree (:mod:`exchange.federation.licence_index`):
    one row per licence held by this node or a node below it — the holder's
    keyed hash (as the audit log hashes holder ids), the licence identifier,
    its type code and the region of the node that holds it. No licence data.
    ``seq`` orders the rows for the push to the parent; ``(holder_ref,
    type_code)`` serves the look-up.

Cursors of the federation's background work (catalogue push and pull,
licence-index push, the last cosigned checkpoint) are rows of ``node_meta``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from zhida.db.base import Base, utcnow

ROWID_BIGINT = BigInteger().with_variant(Integer(), "sqlite")


class LicenceIndexRow(Base):
    __tablename__ = "federation_licence_index"

    seq: Mapped[int] = mapped_column(ROWID_BIGINT, primary_key=True, autoincrement=True)
    licence_id: Mapped[str] = mapped_column(String(80), unique=True)
    holder_ref: Mapped[str] = mapped_column(String(64))
    type_code: Mapped[str] = mapped_column(String(21))
    region_code: Mapped[str] = mapped_column(String(6))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index(None, "holder_ref", "type_code"),)
