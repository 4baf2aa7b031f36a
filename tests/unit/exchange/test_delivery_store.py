"""The delivery store's SQLite fast path writes what the SQLAlchemy path writes."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import insert, select

from exchange.delivery_sql import DELIVERY, Delivery, DeliveryStore, Visibility, _delivery_row
from tests.unit.exchange.sql_support import open_database


def _delivery(n: int, at: datetime) -> Delivery:
    return Delivery(
        id=f"d{n:04d}", kind="query", requester_org="ORG", requester_subject="s",
        provider_org="PROV", resource_code="1-02-001-0000-000008", grant_id="g1",
        items=("代码", "名称"), record_count=n, purpose="核验", trace_id=f"t{n}",
        delivered_at=at,
    )  # fmt: skip


def test_fast_insert_matches_sqlalchemy_binding(tmp_path: Path) -> None:
    with ExitStack() as stack:
        db = open_database(f"sqlite:///{tmp_path / 'd.db'}", stack)
        at = datetime(2026, 12, 5, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=8)))
        store = DeliveryStore(db)
        store.insert_many([_delivery(1, at), _delivery(2, at.replace(microsecond=0))])
        with db.session() as s:  # the reference: SQLAlchemy's own binding
            s.execute(insert(DELIVERY), [_delivery_row(_delivery(3, at))])
        with db.read() as conn:
            raw = conn.exec_driver_sql(
                "SELECT delivery_id, items, delivered_at FROM exchange_delivery ORDER BY seq"
            ).all()
        assert raw[0][1:] == raw[2][1:]
        assert raw[1][2] == "2026-12-04 17:02:03.000000"
        page = store.page(Visibility(None), None, before=0, limit=10)
        assert [d for _seq, d in reversed(page)][:2] == [
            _delivery(1, at.astimezone(UTC)),
            _delivery(2, at.replace(microsecond=0).astimezone(UTC)),
        ]
        with db.read() as conn:
            assert conn.execute(select(DELIVERY.c.record_count)).scalars().all() == [1, 2, 3]
