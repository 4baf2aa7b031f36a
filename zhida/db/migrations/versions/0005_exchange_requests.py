"""exchange: share requests, grants, the grant feed

Revision ID: 0005
Revises: 0004
Create Date: 2025-01-05 00:00:00

Tables of ``exchange.models.requests`` (issue 7); see that module for what
each holds. The single ``exchange_feed`` row is created here so that grant
writers only ever update it (its row lock orders the grant versions). Integer
keys are ``INTEGER`` on SQLite (rowid aliases) and ``BIGINT`` on PostgreSQL.

Must run unchanged on SQLite and PostgreSQL: keep ALTERs inside
``op.batch_alter_table`` and name every constraint via ``op.f()``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exchange_feed",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("grant_version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_exchange_feed_singleton")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_feed")),
    )
    feed = sa.table(
        "exchange_feed", sa.column("id", sa.Integer()), sa.column("grant_version", sa.BigInteger())
    )
    op.bulk_insert(feed, [{"id": 1, "grant_version": 0}])
    op.create_table(
        "exchange_grant",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("requester_org", sa.String(length=64), nullable=False),
        sa.Column("provider_org", sa.String(length=64), nullable=False),
        sa.Column("resource_code", sa.String(length=40), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rate_limit_per_minute", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=256), nullable=False),
        sa.Column("revoked_reason", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_exchange_grant")),
        sa.UniqueConstraint("grant_id", name=op.f("uq_exchange_grant_grant_id")),
    )
    with op.batch_alter_table("exchange_grant", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_exchange_grant_provider_org_seq"), ["provider_org", "seq"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_exchange_grant_requester_org_seq"),
            ["requester_org", "seq"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_exchange_grant_version"), ["version"], unique=False)

    op.create_table(
        "exchange_request",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("requester_org", sa.String(length=64), nullable=False),
        sa.Column("requester_region", sa.String(length=12), nullable=False),
        sa.Column("requested_by", sa.String(length=256), nullable=False),
        sa.Column("resource_code", sa.String(length=40), nullable=False),
        sa.Column("provider_org", sa.String(length=64), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expected_volume", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=256), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approved", sa.Boolean(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("items_granted", sa.Text(), nullable=True),
        sa.Column("until_granted", sa.DateTime(timezone=True), nullable=True),
        sa.Column("grant_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_exchange_request")),
    )
    with op.batch_alter_table("exchange_request", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_exchange_request_provider_org_state_submitted_at_request_id"),
            ["provider_org", "state", "submitted_at", "request_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_exchange_request_requester_org_submitted_at_request_id"),
            ["requester_org", "submitted_at", "request_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("exchange_request", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exchange_request_requester_org_submitted_at_request_id"))
        batch_op.drop_index(
            batch_op.f("ix_exchange_request_provider_org_state_submitted_at_request_id")
        )

    op.drop_table("exchange_request")
    with op.batch_alter_table("exchange_grant", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exchange_grant_version"))
        batch_op.drop_index(batch_op.f("ix_exchange_grant_requester_org_seq"))
        batch_op.drop_index(batch_op.f("ix_exchange_grant_provider_org_seq"))

    op.drop_table("exchange_grant")
    op.drop_table("exchange_feed")
