"""indexes for two look-ups added with expiry and the catalogue's origin rule

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 00:00:00

``licence (status, valid_until)``: the expiry job (``licence_vault.lifecycle``)
asks hourly for valid licences whose validity has ended; without it that is
a scan of the whole licence table. ``catalog_change (code_key, sequence)``:
before a resource is changed, ``resource_origin`` reads the newest change of
that resource to tell its own resources from copies; without it that is a
backwards scan of the whole feed.

Must run unchanged on SQLite and PostgreSQL: keep ALTERs inside
``op.batch_alter_table`` and name every constraint via ``op.f()``.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("licence", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_licence_status_valid_until"), ["status", "valid_until"], unique=False
        )
    with op.batch_alter_table("catalog_change", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_catalog_change_code_key_sequence"),
            ["code_key", "sequence"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("catalog_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_change_code_key_sequence"))
    with op.batch_alter_table("licence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_licence_status_valid_until"))
