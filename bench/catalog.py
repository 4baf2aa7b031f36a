"""Benchmark (issue 3): catalogue search, matching and negative-list checks at 100,000 resources.

* **Search**, on SQLite and on PostgreSQL: 100,000 synthetic resources
  (``catalog_registry.synthetic``) bulk-loaded through
  ``SqlCatalogRepository.insert_resources`` (one transaction each), then the
  query mix of :mod:`bench.catalog_queries` run through the domain's
  ``search()`` (validation, n-grams, page tokens, store) in process, one query
  at a time, on the store as the node opens it (``search_index=True``:
  keyword queries ranked by the in-memory gram index, caught up from the
  change feed, rows read from SQL; its build is timed apart). Target: p99 ≤
  20 ms on both. The same mix on the plain SQL search is reported too
  (``sql_only``). PostgreSQL gets a fresh database on
  ``$ZHIDA_BENCH_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``),
  dropped afterwards.
* **Matching**: 10,000 synthetic demands against the 100,000 resources in the
  in-memory ``MatchIndex``. Target: ≤ 10 s.
* **Negative list**: ``NegativeList.may_release`` with 5,000 entries, one core.
  Target: ≥ 100,000 checks/s.

Set ``ZHIDA_BENCH_CATALOG_RESOURCES`` / ``_QUERIES`` to run smaller.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from bench.catalog_queries import MIX, query_mix
from bench.load import percentile
from bench.procs import pg_database
from catalog_registry.matching import MatchIndex
from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.model import NegativeEntry, Resource
from catalog_registry.negative_list import NegativeList
from catalog_registry.sample_data import PIPL_28, sample_admin
from catalog_registry.search import SearchRequest, search
from catalog_registry.sql import SqlCatalogRepository
from catalog_registry.synthetic import synthetic_demands, synthetic_resources
from zhida.db import Database
from zhida.db.migrate import upgrade

RESOURCES = int(os.environ.get("ZHIDA_BENCH_CATALOG_RESOURCES", "100000"))
QUERIES = int(os.environ.get("ZHIDA_BENCH_CATALOG_QUERIES", "1500"))
DEMANDS = 10_000
CHECKS = 1_000_000
PG_URL = os.environ.get("ZHIDA_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_SEARCH_P99_MS = 20.0
TARGET_MATCH_S = 10.0
TARGET_CHECKS_PER_S = 100_000
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(1000 * percentile(ordered, 0.50), 2),
        "p95_ms": round(1000 * percentile(ordered, 0.95), 2),
        "p99_ms": round(1000 * percentile(ordered, 0.99), 2),
        "max_ms": round(1000 * ordered[-1], 2),
        "samples": len(ordered),
    }


def bench_search(url: str, resources: list[Resource]) -> dict[str, Any]:
    """Load ``resources`` into a migrated database at ``url``; time the query mix."""
    upgrade(url)
    database = Database(url, pool_size=2)
    try:
        repo = SqlCatalogRepository(database, search_index=True)
        start = time.perf_counter()
        repo.insert_resources(resources)
        load_s = time.perf_counter() - start
        _vacuum(url)
        start = time.perf_counter()
        repo.prepare_search_index()
        index_s = time.perf_counter() - start
        queries = list(query_mix(QUERIES, resources))
        return {
            "dialect": database.dialect,
            "resources": len(resources),
            "load_s": round(load_s, 1),
            "index_build_s": round(index_s, 1),
            **_time_mix(repo, queries),
            "sql_only": _time_mix(SqlCatalogRepository(database), queries),
        }
    finally:
        database.dispose()


def _time_mix(
    repo: SqlCatalogRepository, queries: list[tuple[str, SearchRequest]]
) -> dict[str, Any]:
    admin = sample_admin()
    for _, request in queries[:100]:  # warm-up: caches and prepared plans
        search(repo, admin, request)
    times: list[float] = []
    by_kind: dict[str, list[float]] = {k: [] for k, _ in MIX}
    for i, (kind, request) in enumerate(queries):
        started = time.perf_counter()
        page = search(repo, admin, request)
        elapsed = time.perf_counter() - started
        times.append(elapsed)
        by_kind[kind].append(elapsed)
        if page.next_page_token and i % 3 == 0:
            started = time.perf_counter()
            search(repo, admin, dataclasses.replace(request, page_token=page.next_page_token))
            elapsed = time.perf_counter() - started
            times.append(elapsed)
            by_kind[kind].append(elapsed)
    return {**_ms(times), "by_class": {k: _ms(v) for k, v in by_kind.items() if v}}


def _vacuum(url: str) -> None:
    """Fresh planner statistics (and, on PostgreSQL, the visibility map) after the load."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    libpq = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def bench_matching(resources: list[Resource]) -> dict[str, Any]:
    start = time.perf_counter()
    index = MatchIndex.from_resources(resources)
    build_s = time.perf_counter() - start
    demands = list(synthetic_demands(DEMANDS, seed=2))
    start, cpu = time.perf_counter(), time.process_time()
    matches = index.match_all(demands)
    match_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    return {
        "resources": len(index),
        "demands": len(demands),
        "index_build_s": round(build_s, 2),
        "match_s": round(match_s, 2),
        "match_cpu_s": round(cpu_s, 2),
        "met": sum(m.met for m in matches),
    }


def bench_negative(resources: list[Resource]) -> dict[str, Any]:
    repo = InMemoryCatalogRepository()
    for r in resources[:10_000:2]:  # 5,000 entries: some whole resources, most one item
        items = () if r.spec.code.sequence % 4 == 1 else (r.items[0].name,)
        repo.add_negative_entry(NegativeEntry(r.code, items, PIPL_28, "bench", T0))
    negative = NegativeList(repo, lambda: T0)
    keys = [(r.key, item.name) for r in resources[:20_000] for item in r.items[:2]]
    keys = (keys * (CHECKS // len(keys) + 1))[:CHECKS]
    may_release = negative.may_release
    start = time.perf_counter()
    blocked = sum(1 for code, item in keys if not may_release(code, item).allowed)
    elapsed = time.perf_counter() - start
    return {
        "entries": len(repo.negative_entries()),
        "checks": len(keys),
        "blocked": blocked,
        "checks_per_s": round(len(keys) / elapsed),
    }


def run() -> dict[str, Any]:
    started = time.perf_counter()
    resources = list(synthetic_resources(RESOURCES, seed=1))
    with tempfile.TemporaryDirectory(prefix="zhida-bench-catalog-") as tmp:
        sqlite_result = bench_search(f"sqlite:///{tmp}/catalog.db", resources)
    with pg_database() as url:
        pg_result = bench_search(url, resources)
    matching = bench_matching(resources)
    negative = bench_negative(resources)
    p99 = {r["dialect"]: r["p99_ms"] for r in (sqlite_result, pg_result)}
    met = {
        "search_p99": all(v <= TARGET_SEARCH_P99_MS for v in p99.values()),
        "matching": matching["match_s"] <= TARGET_MATCH_S,
        "negative_checks": negative["checks_per_s"] >= TARGET_CHECKS_PER_S,
    }
    sql = {r["dialect"]: r["sql_only"]["p99_ms"] for r in (sqlite_result, pg_result)}
    figure = (
        f"search p99 {p99['sqlite']} ms SQLite / {p99['postgresql']} ms PostgreSQL "
        f"({RESOURCES:,} resources; plain SQL search {sql['sqlite']} / {sql['postgresql']} ms); "
        f"match {DEMANDS:,} demands in {matching['match_s']} s; "
        f"{negative['checks_per_s']:,} negative-list checks/s"
    )
    return {
        "name": "catalog",
        "description": "catalogue search (SQL, both dialects), demand matching, negative list",
        "figure": figure,
        "target": (
            f"search p99 <= {TARGET_SEARCH_P99_MS:g} ms on both; matching <= "
            f"{TARGET_MATCH_S:g} s; >= {TARGET_CHECKS_PER_S:,} checks/s"
        ),
        "met": all(met.values()),
        "met_by_target": met,
        "search": {"sqlite": sqlite_result, "postgresql": pg_result},
        "matching": matching,
        "negative_list": negative,
        "seconds": round(time.perf_counter() - started, 1),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), ensure_ascii=False, indent=2))
