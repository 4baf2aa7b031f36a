"""exchange: hosted datasets, subscriptions, delivery records

Revision ID: 0006
Revises: 0005
Create Date: 2025-01-06 00:00:00

Tables of ``exchange.models.delivery`` (issue 7); see that module for what
each holds. ``exchange_delivery.seq`` is ``INTEGER`` on SQLite (a rowid
alias) and ``BIGINT`` on PostgreSQL.

Must run unchanged on SQLite and PostgreSQL: keep ALTERs inside
``op.batch_alter_table`` and name every constraint via ``op.f()``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROWID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _index(table: str, columns: list[str], *, unique: bool = False) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f"ix_{table}_{'_'.join(columns)}"), columns, unique=unique)


def upgrade() -> None:
    op.create_table(
        "hosted_dataset",
        sa.Column("resource_code", sa.String(length=40), nullable=False),
        sa.Column("provider_org", sa.String(length=64), nullable=False),
        sa.Column("key_item", sa.String(length=128), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("record_count", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("resource_code", name=op.f("pk_hosted_dataset")),
    )
    op.create_table(
        "hosted_record",
        sa.Column("resource_code", sa.String(length=40), nullable=False),
        sa.Column("pos", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("record_key", sa.String(length=256), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("resource_code", "pos", name=op.f("pk_hosted_record")),
    )
    _index("hosted_record", ["resource_code", "record_key"], unique=True)
    op.create_table(
        "hosted_change",
        sa.Column("resource_code", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("operation", sa.String(length=8), nullable=False),
        sa.Column("record_key", sa.String(length=256), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("resource_code", "seq", name=op.f("pk_hosted_change")),
    )
    op.create_table(
        "hosted_upload",
        sa.Column("resource_code", sa.String(length=40), nullable=False),
        sa.Column("upload_id", sa.String(length=128), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("upserted", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("uploaded_by", sa.String(length=256), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("resource_code", "upload_id", name=op.f("pk_hosted_upload")),
    )
    op.create_table(
        "exchange_subscription",
        sa.Column("subscription_id", sa.String(length=64), nullable=False),
        sa.Column("subscriber_org", sa.String(length=64), nullable=False),
        sa.Column("resource_code", sa.String(length=40), nullable=False),
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("acknowledged_cursor", sa.String(length=512), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("subscription_id", name=op.f("pk_exchange_subscription")),
    )
    _index("exchange_subscription", ["subscriber_org", "created_at"])
    op.create_table(
        "exchange_delivery",
        sa.Column("seq", _ROWID, autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("requester_org", sa.String(length=64), nullable=False),
        sa.Column("requester_subject", sa.String(length=256), nullable=False),
        sa.Column("provider_org", sa.String(length=64), nullable=False),
        sa.Column("resource_code", sa.String(length=40), nullable=False),
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("record_count", sa.BigInteger(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("trace_id", sa.String(length=64), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_exchange_delivery")),
        sa.UniqueConstraint("delivery_id", name=op.f("uq_exchange_delivery_delivery_id")),
    )
    _index("exchange_delivery", ["provider_org", "seq"])
    _index("exchange_delivery", ["requester_org", "seq"])
    _index("exchange_delivery", ["resource_code", "seq"])


def downgrade() -> None:
    for table in ("exchange_delivery", "exchange_subscription", "hosted_upload"):
        op.drop_table(table)
    op.drop_table("hosted_change")
    with op.batch_alter_table("hosted_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hosted_record_resource_code_record_key"))
    op.drop_table("hosted_record")
    op.drop_table("hosted_dataset")
