"""catalogue: resources, versions, keyword postings, change feed, demands, negative list

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03 00:00:00

Tables of ``catalog_registry.models`` (issue 3); see that module for what
each holds. The single ``catalog_feed`` row is created here so that writers
only ever update it (its row lock orders the change feed).

Must run unchanged on SQLite and PostgreSQL: keep ALTERs inside
``op.batch_alter_table`` and name every constraint via ``op.f()``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalog_demand",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("requester_code", sa.String(length=18), nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_catalog_demand")),
        sa.UniqueConstraint("id", name=op.f("uq_catalog_demand_id")),
    )
    with op.batch_alter_table("catalog_demand", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_catalog_demand_requester_code_seq"),
            ["requester_code", "seq"],
            unique=False,
        )

    op.create_table(
        "catalog_feed",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.Column("negative_version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_catalog_feed_singleton")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_feed")),
    )
    feed = sa.table(
        "catalog_feed",
        sa.column("id", sa.Integer()),
        sa.column("last_sequence", sa.BigInteger()),
        sa.column("negative_version", sa.BigInteger()),
    )
    op.bulk_insert(feed, [{"id": 1, "last_sequence": 0, "negative_version": 0}])
    op.create_table(
        "catalog_gram",
        sa.Column("gram", sa.String(length=64), nullable=False),
        sa.Column("df", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("gram", name=op.f("pk_catalog_gram")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "catalog_negative_entry",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("code_key", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("items_key", sa.String(length=64), nullable=False),
        sa.Column("item_names", sa.Text(), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("added_by", sa.String(length=512), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_catalog_negative_entry")),
        sa.UniqueConstraint(
            "code_key", "items_key", name=op.f("uq_catalog_negative_entry_code_key_items_key")
        ),
    )
    op.create_table(
        "catalog_posting",
        sa.Column("gram", sa.String(length=64), nullable=False),
        sa.Column(
            "code_key",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("gram", "code_key", name=op.f("pk_catalog_posting")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "catalog_resource",
        sa.Column(
            "code_key",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_code", sa.String(length=18), nullable=False),
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("share_type", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("code_key", name=op.f("pk_catalog_resource")),
    )
    with op.batch_alter_table("catalog_resource", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_catalog_resource_provider_code_code_key"),
            ["provider_code", "code_key"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_catalog_resource_region_code_code_key"),
            ["region_code", "code_key"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_catalog_resource_status_code_key"), ["status", "code_key"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_catalog_resource_level_code_key"), ["level", "code_key"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_catalog_resource_share_type_code_key"),
            ["share_type", "code_key"],
            unique=False,
        )

    op.create_table(
        "catalog_resource_version",
        sa.Column(
            "code_key",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["code_key"],
            ["catalog_resource.code_key"],
            name=op.f("fk_catalog_resource_version_code_key_catalog_resource"),
        ),
        sa.PrimaryKeyConstraint("code_key", "version", name=op.f("pk_catalog_resource_version")),
    )
    op.create_table(
        "catalog_change",
        sa.Column(
            "sequence",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("code_key", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("origin_region", sa.String(length=6), nullable=True),
        sa.Column("origin_sequence", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["code_key", "version"],
            ["catalog_resource_version.code_key", "catalog_resource_version.version"],
            name=op.f("fk_catalog_change_code_key_version_catalog_resource_version"),
        ),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_catalog_change")),
        sa.UniqueConstraint(
            "origin_region",
            "origin_sequence",
            name=op.f("uq_catalog_change_origin_region_origin_sequence"),
        ),
    )


def downgrade() -> None:
    op.drop_table("catalog_change")
    op.drop_table("catalog_resource_version")
    with op.batch_alter_table("catalog_resource", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_resource_share_type_code_key"))
        batch_op.drop_index(batch_op.f("ix_catalog_resource_level_code_key"))
        batch_op.drop_index(batch_op.f("ix_catalog_resource_status_code_key"))
        batch_op.drop_index(batch_op.f("ix_catalog_resource_region_code_code_key"))
        batch_op.drop_index(batch_op.f("ix_catalog_resource_provider_code_code_key"))

    op.drop_table("catalog_resource")
    op.drop_table("catalog_posting")
    op.drop_table("catalog_negative_entry")
    op.drop_table("catalog_gram")
    op.drop_table("catalog_feed")
    with op.batch_alter_table("catalog_demand", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_demand_requester_code_seq"))

    op.drop_table("catalog_demand")
