"""audit log: events, tree nodes, tree state, checkpoints, witness state

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02 00:00:00

Tables of ``audit_log.models`` (issue 6). Integer keys are ``INTEGER`` on
SQLite (rowid aliases) and ``BIGINT`` on PostgreSQL.

Must run unchanged on SQLite and PostgreSQL: keep ALTERs inside
``op.batch_alter_table`` and name every constraint via ``op.f()``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoint",
        sa.Column(
            "size",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("origin", sa.String(length=256), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_checkpoint")),
    )
    op.create_table(
        "audit_event",
        sa.Column(
            "idx",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("leaf", sa.LargeBinary(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("organisation", sa.String(length=512), nullable=True),
        sa.Column("subject", sa.String(length=512), nullable=True),
        sa.Column("resource", sa.String(length=512), nullable=True),
        sa.Column("licence_id", sa.String(length=512), nullable=True),
        sa.Column("holder_ref", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_event_holder_ref_idx"), ["holder_ref", "idx"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_event_licence_id_idx"), ["licence_id", "idx"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_event_organisation_idx"), ["organisation", "idx"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_event_resource_idx"), ["resource", "idx"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_event_subject_idx"), ["subject", "idx"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_audit_event_time"), ["time"], unique=False)

    op.create_table(
        "audit_node",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_node")),
    )
    op.create_table(
        "audit_tree",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_tree_singleton")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_tree")),
    )
    op.create_table(
        "audit_witness",
        sa.Column("origin", sa.String(length=256), nullable=False),
        sa.Column("verifier_key", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("origin", name=op.f("pk_audit_witness")),
    )


def downgrade() -> None:
    op.drop_table("audit_witness")
    op.drop_table("audit_tree")
    op.drop_table("audit_node")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_time"))
        batch_op.drop_index(batch_op.f("ix_audit_event_subject_idx"))
        batch_op.drop_index(batch_op.f("ix_audit_event_resource_idx"))
        batch_op.drop_index(batch_op.f("ix_audit_event_organisation_idx"))
        batch_op.drop_index(batch_op.f("ix_audit_event_licence_id_idx"))
        batch_op.drop_index(batch_op.f("ix_audit_event_holder_ref_idx"))

    op.drop_table("audit_event")
    op.drop_table("audit_checkpoint")
