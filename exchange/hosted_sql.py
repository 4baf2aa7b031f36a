"""The hosted provider's SQL store (SQLite and PostgreSQL): :class:`SqlHostedStore`.

One upload is one transaction: the resource's ``hosted_dataset`` row is
locked first (``SELECT … FOR UPDATE``; SQLite's write transaction is
exclusive anyway), so uploads of one resource apply one after the other and
their change sequences commit in order — a reader paging the change log by
sequence never skips one. Writes are bulk statements (``executemany``);
reads are single indexed range queries in read-only transactions.

Example::

    store = SqlHostedStore(database)
    result = store.apply(batch)                       # exchange.hosted.UploadBatch
    rows = store.scan("1-02-001-0000-000008", after=0, limit=500)
    changes = store.changes("1-02-001-0000-000008", after=0, limit=100)  # from the first
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from exchange.hosted import (
    DatasetInfo,
    StoredChange,
    UploadBatch,
    UploadResult,
    plan_upload,
)
from exchange.models.delivery import (
    HostedChangeRow,
    HostedDatasetRow,
    HostedRecordRow,
    HostedUploadRow,
)
from zhida.db import Database
from zhida.errors import FailedPrecondition

DATASET = cast(Table, HostedDatasetRow.__table__)
RECORD = cast(Table, HostedRecordRow.__table__)
CHANGE = cast(Table, HostedChangeRow.__table__)
UPLOAD = cast(Table, HostedUploadRow.__table__)
CHUNK = 500  # keys per IN (...) list


class SqlHostedStore:
    """:class:`exchange.hosted.HostedStore` over a :class:`zhida.db.Database`."""

    def __init__(self, database: Database) -> None:
        self._db = database

    # -- writes ------------------------------------------------------------------------------
    def apply(self, batch: UploadBatch) -> UploadResult:
        code = batch.resource_code
        with self._db.session() as s:
            dataset = self._lock_dataset(s, batch)
            if batch.upload_id:
                prior = s.execute(
                    select(UPLOAD).where(
                        UPLOAD.c.resource_code == code, UPLOAD.c.upload_id == batch.upload_id
                    )
                ).first()
                if prior is not None:
                    if prior.content_hash != batch.content_hash:
                        raise FailedPrecondition(
                            f"upload id {batch.upload_id!r} was used for other content",
                            reason="UPLOAD_ID_REUSED",
                            metadata={"upload_id": batch.upload_id, "resource_code": code},
                        )
                    return UploadResult(
                        prior.version, prior.upserted, prior.deleted, prior.total, replayed=True
                    )
            if not batch.snapshot and dataset.version and dataset.key_item != batch.key_item:
                raise FailedPrecondition(
                    f"the dataset is keyed by {dataset.key_item!r}; changes must use the same "
                    "key item (upload a snapshot to change it)",
                    reason="KEY_ITEM_CHANGED",
                    metadata={"key_item": dataset.key_item},
                )
            existing = self._existing(s, code, batch)
            plan = plan_upload(
                existing,
                batch.upserts,
                batch.deletes,
                snapshot=batch.snapshot,
                last_seq=dataset.last_seq,
                key_item=batch.key_item,
                record_count=dataset.record_count,
                at=batch.at,
            )
            version = dataset.version + 1
            self._write(s, code, version, plan.inserts, plan.updates, plan.removals, plan.changes)
            s.execute(
                update(DATASET)
                .where(DATASET.c.resource_code == code)
                .values(
                    version=version,
                    last_seq=plan.last_seq,
                    record_count=plan.total,
                    key_item=batch.key_item,
                    provider_org=batch.provider_org,
                    updated_at=batch.at,
                )
            )
            result = UploadResult(version, plan.upserted, plan.deleted, plan.total)
            if batch.upload_id:
                s.execute(
                    insert(UPLOAD).values(
                        resource_code=code, upload_id=batch.upload_id,
                        content_hash=batch.content_hash, version=version,
                        upserted=result.upserted, deleted=result.deleted, total=result.total,
                        uploaded_by=batch.uploaded_by, uploaded_at=batch.at,
                    )
                )  # fmt: skip
        return result

    def _lock_dataset(self, s: Session, batch: UploadBatch) -> Any:
        code = batch.resource_code
        query = select(DATASET).where(DATASET.c.resource_code == code).with_for_update()
        row = s.execute(query).first()
        if row is None:
            if s.get_bind().dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                s.execute(
                    pg_insert(DATASET)
                    .values(**_new_dataset(batch))
                    .on_conflict_do_nothing(index_elements=["resource_code"])
                )
            else:
                s.execute(insert(DATASET).values(**_new_dataset(batch)))
            row = s.execute(query).one()
        return row

    def _existing(self, s: Session, code: str, batch: UploadBatch) -> dict[str, tuple[int, bytes]]:
        base = select(RECORD.c.record_key, RECORD.c.pos, RECORD.c.body).where(
            RECORD.c.resource_code == code
        )
        if batch.snapshot:
            return {k: (p, bytes(b)) for k, p, b in s.execute(base)}
        keys = [*batch.upserts, *batch.deletes]
        out: dict[str, tuple[int, bytes]] = {}
        for i in range(0, len(keys), CHUNK):
            query = base.where(RECORD.c.record_key.in_(keys[i : i + CHUNK]))
            out.update({k: (p, bytes(b)) for k, p, b in s.execute(query)})
        return out

    def _write(
        self,
        s: Session,
        code: str,
        version: int,
        inserts: Sequence[tuple[int, str, bytes]],
        updates: Sequence[tuple[int, int, bytes]],
        removals: Sequence[int],
        changes: Sequence[StoredChange],
    ) -> None:
        for i in range(0, len(removals), CHUNK):
            s.execute(
                delete(RECORD).where(
                    RECORD.c.resource_code == code, RECORD.c.pos.in_(removals[i : i + CHUNK])
                )
            )
        if updates:
            s.execute(
                update(RECORD)
                .where(RECORD.c.resource_code == code, RECORD.c.pos == bindparam("p"))
                .values(seq=bindparam("s"), body=bindparam("b")),
                [{"p": pos, "s": seq, "b": body} for pos, seq, body in updates],
            )
        if inserts:
            s.execute(
                insert(RECORD),
                [
                    {"resource_code": code, "pos": pos, "record_key": key, "seq": pos, "body": body}
                    for pos, key, body in inserts
                ],
            )
        if changes:
            s.execute(
                insert(CHANGE),
                [
                    {
                        "resource_code": code, "seq": c.seq, "operation": c.operation,
                        "record_key": c.key, "body": c.body, "version": version,
                        "changed_at": c.changed_at,
                    }
                    for c in changes
                ],
            )  # fmt: skip

    # -- reads -------------------------------------------------------------------------------
    def dataset(self, resource_code: str) -> DatasetInfo | None:
        with self._db.read() as conn:
            row = conn.execute(
                select(DATASET).where(DATASET.c.resource_code == resource_code)
            ).first()
        if row is None or row.version == 0:
            return None
        return DatasetInfo(
            row.resource_code, row.provider_org, row.key_item, row.version, row.last_seq,
            row.record_count, row.updated_at,
        )  # fmt: skip

    def get(self, resource_code: str, key: str) -> bytes | None:
        with self._db.read() as conn:
            body = conn.execute(
                select(RECORD.c.body).where(
                    RECORD.c.resource_code == resource_code, RECORD.c.record_key == key
                )
            ).scalar()
        return None if body is None else bytes(body)

    def scan(self, resource_code: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        query = (
            select(RECORD.c.pos, RECORD.c.body)
            .where(RECORD.c.resource_code == resource_code, RECORD.c.pos > after)
            .order_by(RECORD.c.pos)
            .limit(limit)
        )
        with self._db.read() as conn:
            return [(pos, body) for pos, body in conn.execute(query).all()]

    def changes(self, resource_code: str, after: int, limit: int) -> list[StoredChange]:
        query = (
            select(CHANGE.c.seq, CHANGE.c.operation, CHANGE.c.record_key, CHANGE.c.body,
                   CHANGE.c.changed_at)
            .where(CHANGE.c.resource_code == resource_code, CHANGE.c.seq > after)
            .order_by(CHANGE.c.seq)
            .limit(limit)
        )  # fmt: skip
        with self._db.read() as conn:
            return [StoredChange(q, op, k, bytes(b), at) for q, op, k, b, at in conn.execute(query)]

    def last_seq(self, resource_code: str) -> int:
        with self._db.read() as conn:
            seq = conn.execute(
                select(DATASET.c.last_seq).where(DATASET.c.resource_code == resource_code)
            ).scalar()
        return int(seq or 0)


def _new_dataset(batch: UploadBatch) -> dict[str, Any]:
    return {
        "resource_code": batch.resource_code,
        "provider_org": batch.provider_org,
        "key_item": batch.key_item,
        "version": 0,
        "last_seq": 0,
        "record_count": 0,
        "updated_at": batch.at,
    }
