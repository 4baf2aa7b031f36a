"""Catalogue sync with the parent: only own-region changes go up, cursors resume, pages repeat."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from catalog_registry import wire
from catalog_registry.federation import Federation
from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.negative_list import NegativeList
from catalog_registry.registry import CatalogRegistry
from catalog_registry.sample_data import (
    GUOFA_2024_3,
    PIPL_28,
    department_principal,
    sample_admin,
)
from exchange.federation.catalog_sync import PULLED, PUSHED, CatalogSync
from exchange.federation.state import SyncState
from tests.unit.catalog_registry.conftest import StepClock, make_spec
from tests.unit.catalog_registry.test_federation import node
from zhida.catalog.v1 import catalog_service_pb2 as pb
from zhida.db import Database
from zhida.db.migrate import upgrade

T = TypeVar("T")


class Parent:
    """The parent's CatalogService (ExportChanges, ImportChildChanges) over a real Federation."""

    def __init__(self, region: str, child: str) -> None:
        self.repo = InMemoryCatalogRepository()
        self.registry = CatalogRegistry(self.repo, StepClock())
        self.federation = Federation(self.repo, region)
        self.child = child
        self.pushed: list[int] = []  # size of each push
        self.reachable = True

    async def ImportChildChanges(
        self, request: pb.ImportChildChangesRequest, timeout: float
    ) -> pb.ImportChildChangesResponse:
        changes = wire.changes_from_pb(request.changes)
        self.pushed.append(len(changes))
        report = self.federation.import_from_child(node(self.child), request.child_region, changes)
        return pb.ImportChildChangesResponse(
            results=[wire.import_result_to_pb(r) for r in report.results],
            imported=report.imported,
            refused=report.refused,
        )

    async def ExportChanges(
        self, request: pb.ExportChangesRequest, timeout: float
    ) -> pb.ExportChangesResponse:
        if not self.reachable:
            raise ConnectionError("the parent is down")
        changes, cursor = self.federation.export_changes(request.since_cursor, request.page_size)
        return pb.ExportChangesResponse(
            changes=[wire.change_to_pb(c) for c in changes], next_cursor=cursor
        )


class NoChannel:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


async def _blocking(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


@pytest.fixture
def state(tmp_path: Path) -> Iterator[SyncState]:
    url = f"sqlite:///{tmp_path / 'child.db'}"
    upgrade(url)
    db = Database(url)
    yield SyncState(db)
    db.dispose()


def child_sync(
    state: SyncState, parent: Parent, repo: InMemoryCatalogRepository, page: int = 100
) -> CatalogSync:
    sync = CatalogSync(Federation(repo, "420102"), state, NoChannel(), _blocking, page=page)  # type: ignore[arg-type]
    sync.stub = parent  # type: ignore[assignment]
    return sync


def test_push_and_pull_resume_from_their_cursors(state: SyncState) -> None:
    city = Parent("420100", "420102")
    county_repo = InMemoryCatalogRepository()
    county = CatalogRegistry(county_repo, StepClock())
    samr = department_principal("ja-samr")
    for code in ("2-04-001-0000-000010", "2-04-001-0000-000011", "2-04-001-0000-000012"):
        county.register(samr, make_spec(code, dept="ja-samr"))
    city.registry.register(
        department_principal("wh-samr"), make_spec("2-04-001-0000-000020", dept="wh-samr")
    )

    sync = child_sync(state, city, county_repo, page=2)
    assert run(sync.push_once()) is True  # a full page: more waiting
    assert run(sync.push_once()) is False
    assert city.pushed == [2, 1]
    assert state.get_int(PUSHED) == 3

    pages = 1
    while run(sync.pull_once()):  # the city's feed: its own change + the county's 3
        pages += 1
    assert pages == 3  # two full pages, then an empty one
    assert county_repo.get_resource("2-04-001-0000-000020") is not None
    assert sync.pulled == 1
    pulled = state.get_int(PULLED)

    # what came down is not pushed back up; a new sync object resumes from the cursors
    again = child_sync(state, city, county_repo)
    assert run(again.push_once()) is False
    assert city.pushed == [2, 1]  # nothing sent: the only new change came from above
    assert state.get_int(PUSHED) == 4
    assert run(again.pull_once()) is False
    assert (state.get_int(PULLED), again.pulled) == (pulled, 0)  # nothing new above
    city.registry.register(
        department_principal("wh-fire"), make_spec("2-05-001-0000-000021", dept="wh-fire")
    )
    assert run(again.pull_once()) is False
    assert (state.get_int(PULLED), again.pulled) == (pulled + 1, 1)


def test_a_failed_pull_keeps_the_cursor(state: SyncState) -> None:
    city = Parent("420100", "420102")
    city.reachable = False
    sync = child_sync(state, city, InMemoryCatalogRepository())
    with pytest.raises(ConnectionError):
        run(sync.pull_once())
    assert state.get(PULLED) is None


def test_only_resources_of_the_childs_region_are_pushed(state: SyncState) -> None:
    """A county that loaded resources of other regions (the whole sample catalogue) pushes
    only its own region's: the parent would refuse the others OUT_OF_REGION."""
    city = Parent("420100", "420102")
    county_repo = InMemoryCatalogRepository()
    county = CatalogRegistry(county_repo, StepClock())
    county.register(
        department_principal("ja-samr"), make_spec("2-04-001-0000-000010", dept="ja-samr")
    )
    county.register(
        department_principal("wh-samr"), make_spec("2-04-001-0000-000020", dept="wh-samr")
    )
    county.register(
        department_principal("hb-data"), make_spec("2-04-001-0000-000030", dept="hb-data")
    )

    sync = child_sync(state, city, county_repo)
    assert run(sync.push_once()) is False
    assert city.pushed == [1]  # the county's own resource only
    assert (sync.pushed, sync.kept) == (1, 2)
    assert city.repo.get_resource("2-04-001-0000-000010") is not None
    assert city.repo.get_resource("2-04-001-0000-000020") is None
    assert state.get_int(PUSHED) == 3  # the cursor passes the kept changes too


def test_negative_entries_travel_with_their_resources_both_ways(state: SyncState) -> None:
    city = Parent("420100", "420102")
    clock = StepClock()
    county_repo = InMemoryCatalogRepository()
    county = CatalogRegistry(county_repo, clock, node_region="420102")
    own, above = "2-04-001-0000-000010", "2-04-001-0000-000020"
    county.register(department_principal("ja-samr"), make_spec(own, dept="ja-samr"))
    city.registry.register(department_principal("wh-samr"), make_spec(above, dept="wh-samr"))
    county_list = NegativeList(county_repo, clock, node_region="420102")
    listed = county_list.add(sample_admin(), own, ("人像照片",), PIPL_28)
    whole = NegativeList(city.repo, clock).add(sample_admin(), above, (), GUOFA_2024_3)

    sync = child_sync(state, city, county_repo)
    assert run(sync.push_once()) is False
    while run(sync.pull_once()):
        pass
    assert city.repo.negative_entries(own) == [listed]
    assert county_repo.negative_entries(above) == [whole]
    county_list.reload()  # as LiveCatalog does when the store's negative version moved
    assert county_list.may_release(above, "姓名").legal_basis == GUOFA_2024_3

    county_list.remove(sample_admin(), own, ("人像照片",))
    assert run(sync.push_once()) is False
    assert city.repo.negative_entries(own) == []
    assert NegativeList(city.repo, clock).may_release(own, "人像照片").allowed
