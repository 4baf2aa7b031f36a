"""federation: the licence index of a node's subtree

Revision ID: 0007
Revises: 0006
Create Date: 2025-01-07 00:00:00

The table of ``exchange.federation.models`` (issue 8): which node holds
which holder's licences (keyed holder hash, identifier, type, region; no
licence data). ``seq`` is ``INTEGER`` on SQLite (a rowid alias) and
``BIGINT`` on PostgreSQL.

Must run unchanged on SQLite and PostgreSQL: keep ALTERs inside
``op.batch_alter_table`` and name every constraint via ``op.f()``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROWID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "federation_licence_index",
        sa.Column("seq", _ROWID, autoincrement=True, nullable=False),
        sa.Column("licence_id", sa.String(length=80), nullable=False),
        sa.Column("holder_ref", sa.String(length=64), nullable=False),
        sa.Column("type_code", sa.String(length=21), nullable=False),
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_federation_licence_index")),
        sa.UniqueConstraint("licence_id", name=op.f("uq_federation_licence_index_licence_id")),
    )
    with op.batch_alter_table("federation_licence_index", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_federation_licence_index_holder_ref_type_code"),
            ["holder_ref", "type_code"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("federation_licence_index", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_federation_licence_index_holder_ref_type_code"))
    op.drop_table("federation_licence_index")
