"""Benchmarks of the catalogue domain, in process, on one core.

Run: ``.venv/bin/python -m tests.unit.catalog_registry.bench_catalog [--resources N --demands M]``

Measures negative-list release checks per second, building the match index,
matching M demands against N published resources (target: 10,000 × 100,000
in ≤ 10 s), incremental index updates, and in-memory search latency. Prints
one JSON object. (Not collected by pytest: the file name does not start with
``test_``; the unit tests run scaled-down versions.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from catalog_registry.matching import MatchIndex
from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.model import NegativeEntry, Resource
from catalog_registry.negative_list import NegativeList
from catalog_registry.sample_data import PIPL_28, sample_admin
from catalog_registry.search import SearchRequest, search
from catalog_registry.synthetic import MISSING_SUBJECTS, synthetic_demands, synthetic_resources
from catalog_registry.todo import unmet_report

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _add_all(index: MatchIndex, resources: list[Resource]) -> None:
    for r in resources:
        index.add(r)


def bench_negative(resources: list[Resource], checks: int) -> dict[str, float]:
    repo = InMemoryCatalogRepository()
    for r in resources[:10_000:2]:  # 5,000 entries: half whole-resource, half one item
        items = () if r.spec.code.sequence % 4 == 1 else (r.items[0].name,)
        repo.add_negative_entry(NegativeEntry(r.code, items, PIPL_28, "bench", T0))
    lst = NegativeList(repo, lambda: T0)
    keys = [(r.key, item.name) for r in resources[:20_000] for item in r.items[:2]]
    keys = (keys * (checks // len(keys) + 1))[:checks]
    start = time.perf_counter()
    blocked = 0
    for code, item in keys:
        if not lst.may_release(code, item).allowed:
            blocked += 1
    elapsed = time.perf_counter() - start
    return {
        "checks": checks,
        "seconds": round(elapsed, 3),
        "checks_per_s": round(checks / elapsed),
        "blocked": blocked,
        "entries": len(repo.negative_entries()),
    }


def bench_matching(resources: list[Resource], n_demands: int) -> dict[str, object]:
    index = MatchIndex()
    build = _timed(lambda: _add_all(index, resources))
    demands = list(synthetic_demands(n_demands, seed=2))
    start, cpu_start = time.perf_counter(), time.process_time()
    matches = index.match_all(demands)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    missing = [any(s in m.demand.spec.wanted_text for s in MISSING_SUBJECTS) for m in matches]
    false_met = sum(1 for m, miss in zip(matches, missing, strict=True) if m.met and miss)
    missed = sum(1 for m, miss in zip(matches, missing, strict=True) if not m.met and not miss)
    todo = unmet_report(matches)
    extra = list(synthetic_resources(1_000, seed=99))

    def churn_all() -> None:
        _add_all(index, extra)
        for r in extra:
            index.remove(r.key)

    churn = _timed(churn_all)
    return {
        "resources": len(resources),
        "demands": n_demands,
        "index_build_s": round(build, 2),
        "match_s": round(elapsed, 2),
        "match_cpu_s": round(cpu, 2),  # wall time suffers when other jobs share the cores
        "per_demand_ms": round(1000 * elapsed / n_demands, 3),
        "target": "10,000 demands x 100,000 resources in <= 10 s",
        "met": sum(m.met for m in matches),
        "unsupplied_asked": sum(missing),
        "false_met": false_met,
        "missed": missed,
        "todo_groups": len(todo),
        "incremental_add_remove_us": round(1e6 * churn / (2 * len(extra)), 1),
    }


def bench_search(resources: list[Resource], runs: int) -> dict[str, object]:
    repo = InMemoryCatalogRepository()
    load = _timed(lambda: repo.insert_resources(resources))
    who = sample_admin()
    cases = {
        "keyword": SearchRequest(keywords="食品经营许可"),
        "keyword_region": SearchRequest(
            keywords="营业执照", region_code="420100", include_subregions=True
        ),
        "common_word": SearchRequest(keywords="信息"),
        "filter_only": SearchRequest(region_code="430300", include_subregions=True),
        "no_filter": SearchRequest(),
    }
    out: dict[str, object] = {"resources": len(resources), "load_s": round(load, 2)}
    for name, request in cases.items():
        times: list[float] = []
        for _ in range(runs):
            start = time.perf_counter()
            page = search(repo, who, request)
            search(repo, who, dataclasses.replace(request, page_token=page.next_page_token))
            times.append((time.perf_counter() - start) / 2)
        out[name] = {
            "p50_ms": round(1000 * statistics.median(times), 2),
            "max_ms": round(1000 * max(times), 2),
            "hits_page1": len(page.hits),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--demands", type=int, default=10_000)
    parser.add_argument("--checks", type=int, default=1_000_000)
    parser.add_argument("--search-runs", type=int, default=20)
    args = parser.parse_args()
    start = time.perf_counter()
    resources = list(synthetic_resources(args.resources, seed=1))
    generate = time.perf_counter() - start
    result = {
        "generate_s": round(generate, 2),
        "negative_list": bench_negative(resources, args.checks),
        "matching": bench_matching(resources, args.demands),
        "search": bench_search(resources, args.search_runs),
    }
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
