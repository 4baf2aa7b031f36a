"""Tables of the licence vault (SQLite and PostgreSQL; migration ``0004``).

``licence``
    One row per licence *version*: the identifier, the columns the vault
    filters on (type, issuer, holder, status, validity), the status-list index,
    the blob digests of its documents and the signed GB/T 36903 payload as JSON
    text. ``(holder_code, type_code)`` serves the holder look-up,
    ``(issuer_code, status_idx)`` the status list, ``lineage`` the versions.
``licence_request``
    Issue request ids per issuer: a retried issue finds its licence here.
``licence_counter``
    Named counters: serial numbers per (type, issuer), status-list indices and
    status-list versions per issuer.
``licence_event``
    The history: every issue, amendment, suspension, resumption and
    revocation with who did it, why, and the issuer's signed record of it.
``licence_consent``
    Holders' consents: organisation, licence types, matter, until when, withdrawn.
``licence_use``
    Every use of a licence (annotated copy, 加注件): who, when, matter, basis.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zhida.db.base import Base

ROWID_BIGINT = BigInteger().with_variant(Integer(), "sqlite")
ID_LEN = 80  # 15 root + 21 type + 18 issuer + 10 serial + 3 version + 1 check + 5 dots


class LicenceRow(Base):
    __tablename__ = "licence"

    id: Mapped[int] = mapped_column(ROWID_BIGINT, primary_key=True, autoincrement=True)
    licence_id: Mapped[str] = mapped_column(String(ID_LEN), unique=True)
    lineage: Mapped[str] = mapped_column(String(ID_LEN))
    version: Mapped[int] = mapped_column(SmallInteger)
    type_code: Mapped[str] = mapped_column(String(21))
    issuer_code: Mapped[str] = mapped_column(String(18))
    holder_code: Mapped[str] = mapped_column(String(18))
    status: Mapped[str] = mapped_column(String(16))
    status_idx: Mapped[int] = mapped_column(BigInteger)
    issued_at: Mapped[datetime]
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)
    jws_digest: Mapped[str] = mapped_column(String(64))
    pdf_digest: Mapped[str | None] = mapped_column(String(64))
    status_reason: Mapped[str] = mapped_column(Text, default="")
    status_changed_at: Mapped[datetime | None]
    payload: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        Index(None, "holder_code", "type_code"),
        Index(None, "issuer_code", "status_idx", unique=True),
        Index(None, "lineage", "version", unique=True),
        Index(None, "pdf_digest"),
        Index(None, "status", "valid_until"),  # the expiry job's due licences
    )


class LicenceRequestRow(Base):
    __tablename__ = "licence_request"

    issuer_code: Mapped[str] = mapped_column(String(18), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    licence_id: Mapped[str] = mapped_column(String(ID_LEN))
    request_hash: Mapped[str] = mapped_column(String(64))


class LicenceCounterRow(Base):
    __tablename__ = "licence_counter"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class LicenceEventRow(Base):
    __tablename__ = "licence_event"

    id: Mapped[int] = mapped_column(ROWID_BIGINT, primary_key=True, autoincrement=True)
    lineage: Mapped[str] = mapped_column(String(ID_LEN))
    licence_id: Mapped[str] = mapped_column(String(ID_LEN))
    action: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    actor_org: Mapped[str] = mapped_column(String(18))
    actor_subject: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text, default="")
    record: Mapped[str] = mapped_column(Text, default="")
    new_licence_id: Mapped[str] = mapped_column(String(ID_LEN), default="")

    __table_args__ = (Index(None, "lineage", "id"),)


class LicenceConsentRow(Base):
    __tablename__ = "licence_consent"

    consent_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder_code: Mapped[str] = mapped_column(String(18))
    organisation: Mapped[str] = mapped_column(String(18))
    type_codes: Mapped[str] = mapped_column(Text)  # comma-separated
    matter_code: Mapped[str] = mapped_column(String(64))
    valid_until: Mapped[datetime]
    created_at: Mapped[datetime]
    withdrawn_at: Mapped[datetime | None]
    withdraw_reason: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index(None, "holder_code"),)


class LicenceUseRow(Base):
    __tablename__ = "licence_use"

    id: Mapped[int] = mapped_column(ROWID_BIGINT, primary_key=True, autoincrement=True)
    annotation_id: Mapped[str] = mapped_column(String(32), unique=True)
    licence_id: Mapped[str] = mapped_column(String(ID_LEN))
    holder_code: Mapped[str] = mapped_column(String(18))
    requester_org: Mapped[str] = mapped_column(String(18))
    requester_subject: Mapped[str] = mapped_column(String(256))
    matter_code: Mapped[str] = mapped_column(String(64))
    matter_name: Mapped[str] = mapped_column(String(200))
    basis: Mapped[str] = mapped_column(String(16))
    consent_id: Mapped[str] = mapped_column(String(32), default="")
    legal_basis: Mapped[str] = mapped_column(Text, default="")
    used_at: Mapped[datetime]
    use_until: Mapped[datetime]
    watermark: Mapped[str] = mapped_column(String(300))
    status_at_use: Mapped[str] = mapped_column(String(16))
    pdf_digest: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index(None, "holder_code", "id"), Index(None, "pdf_digest"))
