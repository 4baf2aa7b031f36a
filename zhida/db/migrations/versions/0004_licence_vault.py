"""licence vault: licences, request ids, counters, history, consents, uses

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04 00:00:00

Tables of ``licence_vault.models`` (issue 5); see that module for what each
holds. Integer keys are ``INTEGER`` on SQLite (rowid aliases) and ``BIGINT``
on PostgreSQL.

Must run unchanged on SQLite and PostgreSQL: keep ALTERs inside
``op.batch_alter_table`` and name every constraint via ``op.f()``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "licence",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("licence_id", sa.String(length=80), nullable=False),
        sa.Column("lineage", sa.String(length=80), nullable=False),
        sa.Column("version", sa.SmallInteger(), nullable=False),
        sa.Column("type_code", sa.String(length=21), nullable=False),
        sa.Column("issuer_code", sa.String(length=18), nullable=False),
        sa.Column("holder_code", sa.String(length=18), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_idx", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("jws_digest", sa.String(length=64), nullable=False),
        sa.Column("pdf_digest", sa.String(length=64), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=False),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licence")),
        sa.UniqueConstraint("licence_id", name=op.f("uq_licence_licence_id")),
    )
    with op.batch_alter_table("licence", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_licence_holder_code_type_code"),
            ["holder_code", "type_code"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_licence_issuer_code_status_idx"),
            ["issuer_code", "status_idx"],
            unique=True,
        )
        batch_op.create_index(
            batch_op.f("ix_licence_lineage_version"), ["lineage", "version"], unique=True
        )
        batch_op.create_index(batch_op.f("ix_licence_pdf_digest"), ["pdf_digest"], unique=False)

    op.create_table(
        "licence_consent",
        sa.Column("consent_id", sa.String(length=32), nullable=False),
        sa.Column("holder_code", sa.String(length=18), nullable=False),
        sa.Column("organisation", sa.String(length=18), nullable=False),
        sa.Column("type_codes", sa.Text(), nullable=False),
        sa.Column("matter_code", sa.String(length=64), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdraw_reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("consent_id", name=op.f("pk_licence_consent")),
    )
    with op.batch_alter_table("licence_consent", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_licence_consent_holder_code"), ["holder_code"], unique=False
        )

    op.create_table(
        "licence_counter",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_licence_counter")),
    )
    op.create_table(
        "licence_event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("lineage", sa.String(length=80), nullable=False),
        sa.Column("licence_id", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_org", sa.String(length=18), nullable=False),
        sa.Column("actor_subject", sa.String(length=256), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("new_licence_id", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licence_event")),
    )
    with op.batch_alter_table("licence_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_licence_event_lineage_id"), ["lineage", "id"], unique=False
        )

    op.create_table(
        "licence_request",
        sa.Column("issuer_code", sa.String(length=18), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("licence_id", sa.String(length=80), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("issuer_code", "request_id", name=op.f("pk_licence_request")),
    )
    op.create_table(
        "licence_use",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("annotation_id", sa.String(length=32), nullable=False),
        sa.Column("licence_id", sa.String(length=80), nullable=False),
        sa.Column("holder_code", sa.String(length=18), nullable=False),
        sa.Column("requester_org", sa.String(length=18), nullable=False),
        sa.Column("requester_subject", sa.String(length=256), nullable=False),
        sa.Column("matter_code", sa.String(length=64), nullable=False),
        sa.Column("matter_name", sa.String(length=200), nullable=False),
        sa.Column("basis", sa.String(length=16), nullable=False),
        sa.Column("consent_id", sa.String(length=32), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("use_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("watermark", sa.String(length=300), nullable=False),
        sa.Column("status_at_use", sa.String(length=16), nullable=False),
        sa.Column("pdf_digest", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licence_use")),
        sa.UniqueConstraint("annotation_id", name=op.f("uq_licence_use_annotation_id")),
    )
    with op.batch_alter_table("licence_use", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_licence_use_holder_code_id"), ["holder_code", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_licence_use_pdf_digest"), ["pdf_digest"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("licence_use", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_licence_use_pdf_digest"))
        batch_op.drop_index(batch_op.f("ix_licence_use_holder_code_id"))

    op.drop_table("licence_use")
    op.drop_table("licence_request")
    with op.batch_alter_table("licence_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_licence_event_lineage_id"))

    op.drop_table("licence_event")
    op.drop_table("licence_counter")
    with op.batch_alter_table("licence_consent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_licence_consent_holder_code"))

    op.drop_table("licence_consent")
    with op.batch_alter_table("licence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_licence_pdf_digest"))
        batch_op.drop_index(batch_op.f("ix_licence_lineage_version"))
        batch_op.drop_index(batch_op.f("ix_licence_issuer_code_status_idx"))
        batch_op.drop_index(batch_op.f("ix_licence_holder_code_type_code"))

    op.drop_table("licence")
