"""federation: the jti replay cache and the idempotency store, shared by all workers

Revision ID: 0008
Revises: 0007
Create Date: 2025-01-08 00:00:00

The tables of ``exchange.federation.store.models`` (issue 8):
``federation_replay`` (accepted assertion ids until they expire) and
``federation_idempotency`` (claims and stored answers of forwarded calls),
so a node run with several workers, or restarted, still refuses a replayed
assertion and still answers a retried request from its store.

Must run unchanged on SQLite and PostgreSQL: keep ALTERs inside
``op.batch_alter_table`` and name every constraint via ``op.f()``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "federation_replay",
        sa.Column("jti", sa.String(length=80), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_federation_replay")),
    )
    with op.batch_alter_table("federation_replay", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_federation_replay_expires_at"), ["expires_at"], unique=False
        )
    op.create_table(
        "federation_idempotency",
        sa.Column("scoped_key", sa.String(length=80), nullable=False),
        sa.Column("request_digest", sa.String(length=80), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('in_progress', 'done')", name=op.f("ck_federation_idempotency_state")
        ),
        sa.PrimaryKeyConstraint("scoped_key", name=op.f("pk_federation_idempotency")),
    )
    with op.batch_alter_table("federation_idempotency", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_federation_idempotency_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("federation_idempotency", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_federation_idempotency_expires_at"))
    op.drop_table("federation_idempotency")
    with op.batch_alter_table("federation_replay", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_federation_replay_expires_at"))
    op.drop_table("federation_replay")
