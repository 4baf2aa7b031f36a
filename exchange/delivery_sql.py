"""SQL stores of delivery records and subscriptions (SQLite and PostgreSQL).

:class:`DeliveryStore` writes delivery records in bulk (the
:class:`~exchange.delivery.DeliveryBook` groups concurrent calls into one
transaction) and lists them newest first by ``seq``, for a requester, a
provider's admin or an auditor. :class:`SubscriptionStore` keeps
subscriptions and their acknowledged cursors.

Example::

    store = DeliveryStore(database)
    store.insert_many([delivery])
    page = store.page(Visibility(org="11420102…", provider_too=True), None, before=0, limit=50)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, insert, or_, select, update

from audit_log.bulk import insert_rows
from exchange.models.delivery import DeliveryRow, SubscriptionRow
from zhida.db import Database
from zhida.db.engine import translated_errors

DELIVERY = cast(Table, DeliveryRow.__table__)
SUBSCRIPTION = cast(Table, SubscriptionRow.__table__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One release of data: a query page, a dataset stream or a change stream."""

    id: str
    kind: str  # "query", "stream", "subscription"
    requester_org: str
    requester_subject: str
    provider_org: str
    resource_code: str
    grant_id: str
    items: tuple[str, ...]
    record_count: int
    purpose: str
    trace_id: str
    delivered_at: datetime


@dataclass(frozen=True, slots=True)
class Visibility:
    """Whose deliveries a caller may list: everyone's (auditor), or an organisation's."""

    org: str | None  # None: all
    provider_too: bool = False  # also deliveries of the org's own resources (its admin)


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    subscriber_org: str
    resource_code: str
    grant_id: str
    acknowledged_cursor: str
    created_by: str
    created_at: datetime
    cancelled_at: datetime | None = None


def _delivery_row(d: Delivery) -> dict[str, Any]:
    return {
        "delivery_id": d.id, "kind": d.kind, "requester_org": d.requester_org,
        "requester_subject": d.requester_subject, "provider_org": d.provider_org,
        "resource_code": d.resource_code, "grant_id": d.grant_id,
        "items": json.dumps(sorted(d.items), ensure_ascii=False),
        "record_count": d.record_count, "purpose": d.purpose, "trace_id": d.trace_id,
        "delivered_at": d.delivered_at,
    }  # fmt: skip


_DELIVERY_COLUMNS = (
    "delivery_id", "kind", "requester_org", "requester_subject", "provider_org",
    "resource_code", "grant_id", "items", "record_count", "purpose", "trace_id", "delivered_at",
)  # fmt: skip


def _sqlite_binds(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` as SQLAlchemy binds it on SQLite (UTCDateTime: naive UTC text; a test checks)."""
    at: datetime = row["delivered_at"]
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: use an aware datetime (e.g. utcnow())")
    row["delivered_at"] = at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return row


def _delivery(row: Any) -> Delivery:
    return Delivery(
        row.delivery_id, row.kind, row.requester_org, row.requester_subject, row.provider_org,
        row.resource_code, row.grant_id, tuple(json.loads(row.items)), row.record_count,
        row.purpose, row.trace_id, row.delivered_at,
    )  # fmt: skip


class DeliveryStore:
    """Delivery records in ``exchange_delivery``."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def insert_many(self, deliveries: Sequence[Delivery]) -> None:
        """Store the records in one transaction."""
        if not deliveries:
            return
        if self._db.dialect == "sqlite":
            # Multi-row INSERTs through the driver: SQLAlchemy's per-row bind work
            # cost more than the database's, in a thread sharing the serving loop's GIL.
            binds = [_sqlite_binds(_delivery_row(d)) for d in deliveries]
            rows = [tuple(b[c] for c in _DELIVERY_COLUMNS) for b in binds]
            with translated_errors(), self._db.engine.begin() as conn:
                insert_rows(conn, DELIVERY.name, _DELIVERY_COLUMNS, rows)
            return
        with self._db.session() as s:
            s.execute(insert(DELIVERY), [_delivery_row(d) for d in deliveries])

    def set_count(self, delivery_id: str, record_count: int) -> None:
        self.set_counts({delivery_id: record_count})

    def set_counts(self, counts: Mapping[str, int]) -> None:
        """Final record counts of streams already recorded: one transaction for all."""
        if not counts:
            return
        with self._db.session() as s:
            for delivery_id, record_count in counts.items():
                s.execute(
                    update(DELIVERY)
                    .where(DELIVERY.c.delivery_id == delivery_id)
                    .values(record_count=record_count)
                )

    def page(
        self, who: Visibility, resource_code: str | None, *, before: int, limit: int
    ) -> list[tuple[int, Delivery]]:
        """Up to ``limit`` records visible to ``who``, newest first, ``seq`` below ``before``."""
        query = select(DELIVERY).order_by(DELIVERY.c.seq.desc()).limit(limit)
        if before:
            query = query.where(DELIVERY.c.seq < before)
        if resource_code:
            query = query.where(DELIVERY.c.resource_code == resource_code)
        if who.org is not None:
            mine = DELIVERY.c.requester_org == who.org
            query = query.where(
                or_(mine, DELIVERY.c.provider_org == who.org) if who.provider_too else mine
            )
        with self._db.read() as conn:
            return [(row.seq, _delivery(row)) for row in conn.execute(query)]


def _subscription(row: Any) -> Subscription:
    return Subscription(
        row.subscription_id, row.subscriber_org, row.resource_code, row.grant_id,
        row.acknowledged_cursor, row.created_by, row.created_at, row.cancelled_at,
    )  # fmt: skip


class SubscriptionStore:
    """Subscriptions in ``exchange_subscription``."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def insert(self, sub: Subscription) -> None:
        with self._db.session() as s:
            s.execute(
                insert(SUBSCRIPTION).values(
                    subscription_id=sub.id, subscriber_org=sub.subscriber_org,
                    resource_code=sub.resource_code, grant_id=sub.grant_id,
                    acknowledged_cursor=sub.acknowledged_cursor, created_by=sub.created_by,
                    created_at=sub.created_at, cancelled_at=sub.cancelled_at,
                )
            )  # fmt: skip

    def get(self, subscription_id: str) -> Subscription | None:
        with self._db.read() as conn:
            row = conn.execute(
                select(SUBSCRIPTION).where(SUBSCRIPTION.c.subscription_id == subscription_id)
            ).first()
        return None if row is None else _subscription(row)

    def of(self, subscriber_org: str) -> list[Subscription]:
        """The organisation's subscriptions, oldest first."""
        query = (
            select(SUBSCRIPTION)
            .where(SUBSCRIPTION.c.subscriber_org == subscriber_org)
            .order_by(SUBSCRIPTION.c.created_at, SUBSCRIPTION.c.subscription_id)
        )
        with self._db.read() as conn:
            return [_subscription(row) for row in conn.execute(query)]

    def update(
        self,
        subscription_id: str,
        *,
        acknowledged_cursor: str | None = None,
        cancelled_at: datetime | None = None,
    ) -> Subscription | None:
        """Set the cursor and/or cancel; the stored result (None: unknown id)."""
        values: dict[str, Any] = {}
        if acknowledged_cursor is not None:
            values["acknowledged_cursor"] = acknowledged_cursor
        if cancelled_at is not None:
            values["cancelled_at"] = cancelled_at
        with self._db.session() as s:
            if values:
                s.execute(
                    update(SUBSCRIPTION)
                    .where(SUBSCRIPTION.c.subscription_id == subscription_id)
                    .values(**values)
                )
            row = s.execute(
                select(SUBSCRIPTION).where(SUBSCRIPTION.c.subscription_id == subscription_id)
            ).first()
        return None if row is None else _subscription(row)
