"""foundation: node_meta

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00

Must run unchanged on SQLite and PostgreSQL: keep ALTERs inside
``op.batch_alter_table`` and name every constraint via ``op.f()``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "node_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_node_meta")),
    )


def downgrade() -> None:
    op.drop_table("node_meta")
