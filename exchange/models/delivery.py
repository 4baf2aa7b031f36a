"""Tables of hosted datasets, subscriptions and delivery records (SQLite and PostgreSQL; 0006).

``hosted_dataset``
    One row per resource whose data the node hosts (the built-in provider):
    the key item, the dataset ``version`` (one per applied upload), the last
    change sequence ``last_seq`` and the number of records. Uploads of one
    resource lock this row, so the change sequences (and record positions) of
    a resource are allocated, and committed, in order.
``hosted_record``
    The current records: ``body`` is the record as a serialized
    ``zhida.provider.v1.Record`` (deterministic: fields sorted). ``pos`` is
    the change sequence that inserted the record and never changes while the
    record lives (an update sets ``seq``), so ``(resource_code, pos)`` — the
    primary key — is the order and the cursor of ``StreamDataset``.
``hosted_change``
    The change log of each resource: ``seq`` counts 1, 2, 3… per resource and
    is the cursor of subscriptions; ``operation`` is ``upsert`` or ``delete``
    (whose ``body`` carries only the key).
``hosted_upload``
    Applied uploads by ``(resource_code, upload_id)`` with the content hash and
    the result, so a retried upload is answered from here and applied once.
``exchange_subscription``
    A department's subscription to a resource's changes and the last cursor
    it acknowledged.
``exchange_delivery``
    One row per release of data (a query page, a dataset stream, a change
    stream): who received which items of which resource under which grant,
    how many records, for what purpose, with the call's trace id. ``seq`` is
    the listing order.

Example::

    from sqlalchemy import select

    from exchange.models.delivery import DeliveryRow
    from zhida.db import Database

    with Database("sqlite:///.zhida/zhida.db").read() as conn:
        rows = conn.execute(select(DeliveryRow.resource_code, DeliveryRow.record_count)).all()
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zhida.db.base import Base

ROWID_BIGINT = BigInteger().with_variant(Integer(), "sqlite")
ID_LEN = 64
ORG_LEN = 64
CODE_LEN = 40
SUBJECT_LEN = 256
KEY_LEN = 256  # a record key (e.g. a USCC, an id number, a licence number)
ITEM_LEN = 128
CURSOR_LEN = 512
UPLOAD_ID_LEN = 128


class HostedDatasetRow(Base):
    __tablename__ = "hosted_dataset"

    resource_code: Mapped[str] = mapped_column(String(CODE_LEN), primary_key=True)
    provider_org: Mapped[str] = mapped_column(String(ORG_LEN))
    key_item: Mapped[str] = mapped_column(String(ITEM_LEN))
    version: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    record_count: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class HostedRecordRow(Base):
    __tablename__ = "hosted_record"

    resource_code: Mapped[str] = mapped_column(String(CODE_LEN), primary_key=True)
    pos: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    record_key: Mapped[str] = mapped_column(String(KEY_LEN))
    seq: Mapped[int] = mapped_column(BigInteger)  # the change that wrote this version
    body: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (Index(None, "resource_code", "record_key", unique=True),)


class HostedChangeRow(Base):
    __tablename__ = "hosted_change"

    resource_code: Mapped[str] = mapped_column(String(CODE_LEN), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    operation: Mapped[str] = mapped_column(String(8))
    record_key: Mapped[str] = mapped_column(String(KEY_LEN))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    version: Mapped[int] = mapped_column(BigInteger)
    changed_at: Mapped[datetime]


class HostedUploadRow(Base):
    __tablename__ = "hosted_upload"

    resource_code: Mapped[str] = mapped_column(String(CODE_LEN), primary_key=True)
    upload_id: Mapped[str] = mapped_column(String(UPLOAD_ID_LEN), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(BigInteger)
    upserted: Mapped[int] = mapped_column(BigInteger)
    deleted: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    uploaded_by: Mapped[str] = mapped_column(String(SUBJECT_LEN))
    uploaded_at: Mapped[datetime]


class SubscriptionRow(Base):
    __tablename__ = "exchange_subscription"

    subscription_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    subscriber_org: Mapped[str] = mapped_column(String(ORG_LEN))
    resource_code: Mapped[str] = mapped_column(String(CODE_LEN))
    grant_id: Mapped[str] = mapped_column(String(ID_LEN))
    acknowledged_cursor: Mapped[str] = mapped_column(String(CURSOR_LEN))
    created_by: Mapped[str] = mapped_column(String(SUBJECT_LEN))
    created_at: Mapped[datetime]
    cancelled_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "subscriber_org", "created_at"),)


class DeliveryRow(Base):
    __tablename__ = "exchange_delivery"

    seq: Mapped[int] = mapped_column(ROWID_BIGINT, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(ID_LEN), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    requester_org: Mapped[str] = mapped_column(String(ORG_LEN))
    requester_subject: Mapped[str] = mapped_column(String(SUBJECT_LEN))
    provider_org: Mapped[str] = mapped_column(String(ORG_LEN))
    resource_code: Mapped[str] = mapped_column(String(CODE_LEN))
    grant_id: Mapped[str] = mapped_column(String(ID_LEN))
    items: Mapped[str] = mapped_column(Text)  # JSON array, sorted
    record_count: Mapped[int] = mapped_column(BigInteger)
    purpose: Mapped[str] = mapped_column(Text)
    trace_id: Mapped[str] = mapped_column(String(64))
    delivered_at: Mapped[datetime]

    __table_args__ = (
        Index(None, "requester_org", "seq"),
        Index(None, "provider_org", "seq"),
        Index(None, "resource_code", "seq"),
    )
