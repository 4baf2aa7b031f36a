"""The delivery path's catalogue cache on SQLite and PostgreSQL: never staler than the store.

Another process's catalogue (a second LiveCatalog over the same database)
adds a negative entry and updates a resource; the cache notices both at its
next refresh (or quick check on SQLite), and :class:`Freshness` only returns
after a refresh that began after the wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor

from catalog_registry.live import LiveCatalog
from catalog_registry.sample_data import PIPL_28, department_principal, sample_admin
from catalog_registry.sql import SqlCatalogRepository
from exchange.catalogue_cache import MISSING, FreshCatalogue, Freshness
from exchange.context import CatalogueView
from exchange.sample_registry import RESOURCE_CODE, registry_spec
from zhida.db import Database

CODE = RESOURCE_CODE


def _two_catalogues(database: Database) -> tuple[LiveCatalog, FreshCatalogue]:
    writer = LiveCatalog(SqlCatalogRepository(database), "420100")  # "another worker"
    reader = CatalogueView(LiveCatalog(SqlCatalogRepository(database), "420100"))
    clerk = department_principal("wh-samr")
    writer.registry.register(clerk, registry_spec(CODE))
    writer.registry.publish(clerk, CODE)
    return writer, FreshCatalogue(reader, database)


def test_refresh_sees_other_writers(database: Database) -> None:
    writer, fresh = _two_catalogues(database)
    fresh.refresh()
    assert fresh.cached(CODE) is MISSING
    resource = fresh.load(CODE)
    assert resource is not None
    assert fresh.cached(CODE) is resource
    assert fresh.negative.may_release(CODE, "住所").allowed
    version = fresh.negative_version

    clerk = department_principal("wh-samr")
    spec = dataclasses.replace(resource.spec, description="新的描述")
    writer.registry.update(clerk, spec)
    fresh.refresh()
    assert fresh.cached(CODE) is MISSING  # the catalogue moved: reload
    reloaded = fresh.load(CODE)
    assert reloaded is not None
    assert reloaded.spec.description == "新的描述"

    writer.negative_list().add(sample_admin(), CODE, ("住所",), PIPL_28)
    fresh.refresh()
    assert fresh.negative_version != version
    assert not fresh.negative.may_release(CODE, "住所").allowed
    fresh.close()


def test_quick_checks_only_when_it_can_tell(database: Database) -> None:
    writer, fresh = _two_catalogues(database)
    assert not fresh.quick()  # nothing read yet
    fresh.refresh()
    fresh.load(CODE)
    sqlite = database.dialect == "sqlite"
    assert fresh.quick() is sqlite
    writer.negative_list().add(sample_admin(), CODE, ("住所",), PIPL_28)
    assert not fresh.quick()  # a changed negative list needs a full refresh
    fresh.refresh()
    assert fresh.quick() is sqlite
    fresh.close()


def test_freshness_waits_for_a_refresh_begun_after_the_call() -> None:
    started: list[int] = []

    def refresh() -> None:
        started.append(len(started))

    async def scenario() -> tuple[int, int]:
        gate = Freshness(refresh, ThreadPoolExecutor(2))
        await gate.wait()
        first = len(started)
        await asyncio.gather(*(gate.wait() for _ in range(20)))  # coalesced
        return first, len(started)

    first, total = asyncio.run(scenario())
    assert first == 1
    assert 2 <= total <= 3


def test_freshness_uses_the_quick_path_between_full_refreshes() -> None:
    fulls: list[int] = []
    quicks: list[int] = []

    def quick() -> bool:
        quicks.append(1)
        return True

    async def scenario() -> None:
        gate = Freshness(lambda: fulls.append(1), ThreadPoolExecutor(1), quick=quick, interval=60)
        for _ in range(5):
            await gate.wait()

    asyncio.run(scenario())
    assert len(fulls) == 1  # the first wait: nothing was read yet
    assert len(quicks) == 4
