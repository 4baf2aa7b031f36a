"""The demo's exchange chapter on the local federation: what it prints holds, its checks bite.

The chapter needs the federation (foundation chapter) and the county's
published sample catalogue (catalogue chapter); the vault chapter is not
needed. The provider side runs at the 武汉 node, the county department at
江岸区: every call of the department is forwarded county → city.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from rich.console import Console

from catalog_registry.sample_data import PIPL_28
from zhida.auth.principal import Role
from zhida.client import bearer
from zhida.demo import (
    CITY,
    DemoContext,
    DemoError,
    _chapters,
    catalog,
    exchange,
    foundation,
    node_at,
    stop_federation,
)
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.exchange.v1 import exchange_service_pb2_grpc as pb_grpc
from zhida.provider.v1 import data_provider_service_pb2 as ppb


@pytest.fixture
def story(tmp_path: Path) -> Iterator[tuple[DemoContext, io.StringIO]]:
    text = io.StringIO()
    ctx = DemoContext(Console(file=text, width=120), tmp_path)
    try:
        foundation.chapter(ctx)
        catalog.chapter(ctx)
        yield ctx, text
    finally:
        codes = stop_federation(ctx)
        assert set(codes.values()) == {0}, codes


@pytest.mark.integration
def test_the_exchange_chapter_delivers_only_the_granted_items(
    story: tuple[DemoContext, io.StringIO],
) -> None:
    ctx, text = story
    exchange.chapter(ctx)
    printed = text.getvalue()
    assert "PERMISSION_DENIED NO_GRANT" in printed  # nothing before the decision
    assert "routed 江岸区 420102 → 武汉市 420100" in printed
    assert "approves 3 of 6 items" in printed
    assert "FAILED_PRECONDITION NEGATIVE_LISTED (item 人像照片)" in printed
    assert PIPL_28[:30] in printed  # the negative list's legal basis, decoded from ErrorInfo

    # Independently of the chapter: the provider's delivery records (at 武汉, where the data
    # is served) name the granted items only.
    node = node_at(ctx, CITY)
    police = exchange.POLICE
    token = node.mint(Role.ADMIN, organisation=police.uscc, region_code=police.region_code)
    admin = bearer(token)
    rows = len(exchange.residents())
    pages = [min(exchange.PAGE, rows - n) for n in range(0, rows, exchange.PAGE)]
    with grpc.insecure_channel(node.address) as channel:
        stub = pb_grpc.ExchangeServiceStub(channel)
        deliveries: list[pb.Delivery] = []
        deadline = time.monotonic() + 10
        while (
            len(deliveries) < 1 + len(pages) and time.monotonic() < deadline
        ):  # the book is written behind
            reply = stub.ListDeliveries(
                pb.ListDeliveriesRequest(resource_code=exchange.HOUSEHOLD), metadata=admin
            )
            deliveries = list(reply.deliveries)
            time.sleep(0.05)
    assert sorted(d.record_count for d in deliveries) == sorted([1, *pages])
    assert all(set(d.items) == set(exchange.GRANTED) for d in deliveries)
    assert {d.requester_org for d in deliveries} == {exchange.COUNTY_DEPT.uscc}


def test_a_record_with_an_item_never_granted_fails_the_chapter() -> None:
    rows = exchange.residents()
    by_key = {row[exchange.KEY_ITEM]: row for row in rows}
    first = rows[0]
    granted = {k: first[k] for k in exchange.GRANTED}
    exchange.check_minimised([ppb.Record(key=first[exchange.KEY_ITEM], fields=granted)], by_key)
    leaked = ppb.Record(key=first[exchange.KEY_ITEM], fields={**granted, "人像照片": "x"})
    with pytest.raises(DemoError, match="never granted"):
        exchange.check_minimised([leaked], by_key)
    altered = ppb.Record(key=first[exchange.KEY_ITEM], fields={**granted, "姓名": "某某"})
    with pytest.raises(DemoError, match="does not match"):
        exchange.check_minimised([altered], by_key)


def test_the_synthetic_residents_have_valid_unique_id_numbers() -> None:
    from stdnum.cn import ric

    ids = [row[exchange.KEY_ITEM] for row in exchange.residents()]
    assert len(set(ids)) == len(ids)
    assert all(ric.is_valid(i) for i in ids)


def test_the_exchange_chapter_comes_after_the_vault_and_before_the_access_log() -> None:
    chapters = [fn for _, fn in _chapters()]
    vault_at = next(i for i, (title, _) in enumerate(_chapters()) if "licence vault" in title)
    assert chapters.index(exchange.chapter) == vault_at + 1
    assert chapters[-1].__module__ == "zhida.demo.audit"
