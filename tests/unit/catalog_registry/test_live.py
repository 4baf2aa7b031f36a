"""LiveCatalog: in-memory indexes that stay true across worker processes, release checks,
demand lists, to-do lists, bulk import and export (SQLite; two instances = two workers)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from catalog_registry.live import LiveCatalog
from catalog_registry.model import ResourceStatus
from catalog_registry.sample_data import (
    DEPARTMENTS,
    PIPL_28,
    department_principal,
    load_sample,
    sample_admin,
)
from tests.unit.catalog_registry.conftest import StepClock, make_spec
from tests.unit.catalog_registry.sql_support import open_store
from zhida.errors import InvalidArgument, NotFound, PermissionDenied

PHOTO = ("1-01-001-0000-000002", "人像照片")  # negative-listed in the sample


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[LiveCatalog, LiveCatalog]]:
    """Two LiveCatalogs on one database, as two ``zhida serve`` workers would have.

    A national node's: the whole sample is within its region.
    """
    with ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
        first = LiveCatalog(open_store(url, stack), "100000", clock=StepClock())
        second = LiveCatalog(open_store(url, stack), "100000", clock=StepClock())
        yield first, second


@pytest.fixture
def loaded(workers: tuple[LiveCatalog, LiveCatalog]) -> tuple[LiveCatalog, LiveCatalog]:
    first, _ = workers
    load_sample(first.registry, first.negative_list())
    return workers


def test_match_index_follows_writes_of_the_other_worker(
    loaded: tuple[LiveCatalog, LiveCatalog],
) -> None:
    first, second = loaded
    report = second.coverage()  # second builds its index from the store
    supplied = sum(r.resources_supplied for r in report.regions)
    police = department_principal("wh-police")
    spec = make_spec("1-01-009-0000-000001", name="无犯罪记录证明信息", dept="wh-police")
    first.registry.register(police, spec)
    first.registry.publish(police, spec.code)
    again = second.coverage()  # ... and catches up through the change feed
    assert sum(r.resources_supplied for r in again.regions) == supplied + 1
    first.registry.retire(police, spec.code)
    assert sum(r.resources_supplied for r in second.coverage().regions) == supplied


def test_negative_list_reloads_when_another_worker_changes_it(
    loaded: tuple[LiveCatalog, LiveCatalog],
) -> None:
    first, second = loaded
    assert second.check_release(*PHOTO).reason == "NEGATIVE_LISTED"
    first.negative_list().remove(sample_admin(), PHOTO[0], (PHOTO[1],))
    # The photo is still marked not shared on the resource: refused, but for that reason.
    release = second.check_release(*PHOTO)
    assert (release.allowed, release.reason, release.entry) == (False, "NOT_SHARED", None)
    first.negative_list().add(sample_admin(), PHOTO[0], ("姓名",), PIPL_28)
    assert second.check_release(PHOTO[0], "姓名").legal_basis == PIPL_28


def test_release_checks(loaded: tuple[LiveCatalog, LiveCatalog]) -> None:
    live, _ = loaded
    assert live.check_release("1010010000000002", "姓名").allowed  # compact code form
    with pytest.raises(NotFound):
        live.check_release("1-01-001-0000-099999", "姓名")
    with pytest.raises(InvalidArgument) as info:
        live.check_release(PHOTO[0], "无此项")
    assert info.value.reason == "UNKNOWN_DATA_ITEM"
    with pytest.raises(InvalidArgument):
        live.check_release("nonsense", "姓名")
    police = department_principal("wh-police")
    spec = make_spec("1-01-009-0000-000002", dept="wh-police")
    live.registry.register(police, spec)
    assert live.check_release(spec.code.text, "姓名").reason == "NOT_PUBLISHED"


def test_demand_pages_and_todo_lists(loaded: tuple[LiveCatalog, LiveCatalog]) -> None:
    live, _ = loaded
    admin = sample_admin()
    page, token = live.list_demands(admin, None, False, 3, "")
    assert len(page) == 3
    assert token
    rest, end = live.list_demands(admin, None, False, 10, token)
    assert len(rest) == 5
    assert end == ""
    unmet, _ = live.list_demands(admin, None, True, 10, "")
    assert {m.demand.spec.wanted_text for m in unmet} == {
        "需要婚姻信息",
        "残疾人证信息",
        "需要职工人事档案信息",
    }
    with pytest.raises(InvalidArgument):
        live.list_demands(admin, None, True, 10, token)  # a token of other filters
    ja = department_principal("ja-gov")
    mine, _ = live.list_demands(ja, None, False, 10, "")
    assert {m.demand.requester_code for m in mine} == {DEPARTMENTS["ja-gov"].uscc}
    with pytest.raises(PermissionDenied):
        live.list_demands(ja, DEPARTMENTS["wh-civil"].uscc, False, 10, "")
    todos = live.unmet_report(admin, None)
    assert sum(len(t.demands) for t in todos) == 3
    civil = department_principal("wh-civil")
    (own,) = live.unmet_report(civil, None)  # a department sees only its own to-do list
    assert own.provider_code == civil.organisation
    assert [u.demand.spec.wanted_text for u in own.demands] == ["需要婚姻信息"]
    assert live.unmet_report(department_principal("wh-water"), None) == []


def test_a_county_node_keeps_to_its_region(tmp_path: Path) -> None:
    with ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'county.db'}"
        county = LiveCatalog(open_store(url, stack), "420102", clock=StepClock())
        with pytest.raises(InvalidArgument) as info:
            county.registry.register(sample_admin(), make_spec(dept="wh-police"))  # 420100
        assert info.value.reason == "OUTSIDE_NODE_REGION"
        row = {"code": "3-20-001-0000-000001", "name": "武汉资源", "provider_code":
               DEPARTMENTS["wh-police"].uscc, "provider_name": "武汉市公安局",
               "region_code": "420100", "share_type": "unconditional",
               "items": [{"name": "姓名", "type": "string"}]}  # fmt: skip
        with pytest.raises(InvalidArgument) as imported:
            county.import_file(sample_admin(), json.dumps([row], ensure_ascii=False), csv=False)
        assert [v.field for v in imported.value.violations] == ["rows[1].region_code"]
        demands = load_sample(county.registry, county.negative_list())
        assert {r.region_code for r in county.repo.iter_resources()} == {"420102"}
        assert len(demands) == 3  # 江岸区政务服务和大数据管理局's


def test_import_names_bad_rows_and_export_reads_back(
    loaded: tuple[LiveCatalog, LiveCatalog],
) -> None:
    live, _ = loaded
    admin = sample_admin()
    text, count = live.export_document(admin, (ResourceStatus.PUBLISHED,), dcat=False, title="t")
    rows = json.loads(text)
    assert count == len(rows) == 25
    for i, row in enumerate(rows):
        row["code"] = f"3-20-001-0000-{i + 1:06d}"
    original, rows[3]["share_type"] = rows[3]["share_type"], "sometimes"
    with pytest.raises(InvalidArgument) as info:
        live.import_file(admin, json.dumps(rows, ensure_ascii=False), csv=False)
    assert [v.field for v in info.value.violations] == ["rows[4].share_type"]
    assert live.repo.get_resource("3-20-001-0000-000001") is None
    rows[3]["share_type"] = original
    codes = live.import_file(admin, json.dumps(rows, ensure_ascii=False), csv=False)
    assert len(codes) == 25
    document, _ = live.export_document(admin, (ResourceStatus.DRAFT,), dcat=True, title="目录")
    assert len(json.loads(document)["dcat:dataset"]) == 25
