"""Bulk import (all or nothing, per-row errors) and JSON / DCAT-AP export."""

from __future__ import annotations

import json

import pytest

from catalog_registry.importexport import (
    DCAT_CONTEXT,
    export_dcat,
    export_json,
    import_resources,
    read_csv,
    read_json,
)
from catalog_registry.memory import InMemoryCatalogRepository
from catalog_registry.model import Demand, ResourceStatus, ShareType
from catalog_registry.registry import CatalogRegistry
from catalog_registry.sample_data import DEPARTMENTS
from tests.unit.catalog_registry.conftest import StepClock, principal
from zhida.auth.principal import Principal, Role
from zhida.errors import InvalidArgument, PermissionDenied

POLICE = DEPARTMENTS["wh-police"].uscc
HEADER = "code,name,provider_code,provider_name,region_code,share_type,share_conditions,items\n"


def csv_rows(*lines: str) -> str:
    return HEADER + "".join(line + "\n" for line in lines)


GOOD_1 = (
    f"1-01-001-0000-000201,居民户籍登记信息,{POLICE},武汉市公安局,420100,有条件共享,"
    "经审核同意后共享,姓名:string;公民身份号码:string;人像照片:binary:not_shared"
)
GOOD_2 = (
    f"1-01-001-0000-000202,居住证信息,{POLICE},武汉市公安局,420100,无条件共享,,"
    "姓名:string;居住证号码:string;有效期至:date"
)
BAD = (
    f"1-01-001-0000-00020,暂住登记信息,{POLICE},武汉市公安局,420002,开放共享,,姓名:text;姓名:string"
)


def test_csv_import_registers_drafts(registry: CatalogRegistry, police: Principal) -> None:
    report = import_resources(registry, police, read_csv(csv_rows(GOOD_1, GOOD_2)))
    assert report.ok
    assert report.imported == ("1-01-001-0000-000201", "1-01-001-0000-000202")
    stored = registry.get(police, "1-01-001-0000-000201")
    assert stored.status is ResourceStatus.DRAFT
    assert stored.items[2].share_type is ShareType.NOT_SHARED
    assert stored.share_type is ShareType.CONDITIONAL


def test_one_bad_row_imports_nothing_and_is_named(
    registry: CatalogRegistry, police: Principal
) -> None:
    report = import_resources(registry, police, read_csv(csv_rows(GOOD_1, BAD, GOOD_2)))
    assert report.imported == ()
    assert {e.row for e in report.errors} == {2}
    fields = {e.field for e in report.errors}
    assert fields == {"code", "region_code", "share_type", "items[0].type", "items[1].name"}
    assert list(registry.repository.iter_resources()) == []


def test_duplicates_in_file_and_in_catalogue(registry: CatalogRegistry, police: Principal) -> None:
    assert import_resources(registry, police, read_csv(csv_rows(GOOD_1))).ok
    report = import_resources(registry, police, read_csv(csv_rows(GOOD_2, GOOD_2, GOOD_1)))
    assert [(e.row, e.field) for e in report.errors] == [(2, "code"), (3, "code")]
    assert "repeats row 1" in report.errors[0].description
    assert "already registered" in report.errors[1].description
    assert [r.key for r in registry.repository.iter_resources()] == ["1-01-001-0000-000201"]


def test_department_imports_only_its_own(
    registry: CatalogRegistry, samr: Principal, admin: Principal
) -> None:
    report = import_resources(registry, samr, read_csv(csv_rows(GOOD_1)))
    assert [(e.row, e.field) for e in report.errors] == [(1, "provider_code")]
    assert import_resources(registry, admin, read_csv(csv_rows(GOOD_1))).ok
    with pytest.raises(PermissionDenied):
        import_resources(registry, principal(Role.AUDITOR), read_csv(csv_rows(GOOD_2)))


def test_empty_and_malformed_files(registry: CatalogRegistry, police: Principal) -> None:
    assert not import_resources(registry, police, read_csv(HEADER)).ok
    for text in ["not json", '{"code": 1}', "[1, 2]"]:
        with pytest.raises(InvalidArgument) as info:
            read_json(text)
        assert info.value.reason == "INVALID_IMPORT_FILE"


def test_json_export_round_trips(
    repo: InMemoryCatalogRepository,
    sample_demands: list[Demand],
    clock: StepClock,
    admin: Principal,
) -> None:
    resources = list(repo.iter_resources())
    text = export_json(resources)
    rows = json.loads(text)
    assert rows[0]["status"] == "published"
    assert rows[0]["version"] == 2
    target = CatalogRegistry(InMemoryCatalogRepository(), clock)
    report = import_resources(target, admin, read_json(text))
    assert report.ok
    assert len(report.imported) == len(resources)
    for original in resources:
        copy = target.get(admin, original.key)
        assert copy.spec == original.spec
        assert copy.status is ResourceStatus.DRAFT


def test_json_rows_report_row_numbers(registry: CatalogRegistry, police: Principal) -> None:
    rows = read_json(
        json.dumps(
            [
                {
                    "code": "1-01-001-0000-000301",
                    "name": "户籍",
                    "provider_code": POLICE,
                    "provider_name": "武汉市公安局",
                    "region_code": "420100",
                    "share_type": "unconditional",
                    "items": [{"name": "姓名", "type": "string"}],
                },
                {
                    "code": "1-01-001-0000-000302",
                    "name": "户籍2",
                    "provider_code": POLICE,
                    "provider_name": "武汉市公安局",
                    "region_code": "420100",
                    "share_type": "unconditional",
                    "items": [{"name": "姓名"}],
                    "related_codes": "x",
                },
            ]
        )
    )
    report = import_resources(registry, police, rows)
    assert sorted((e.row, e.field) for e in report.errors) == [
        (2, "items[0].type"),
        (2, "related_codes"),
    ]


def test_dcat_ap_export(repo: InMemoryCatalogRepository, sample_demands: list[Demand]) -> None:
    resources = list(repo.iter_resources(ResourceStatus.PUBLISHED))
    hb = DEPARTMENTS["hb-data"]
    doc = export_dcat(
        resources,
        base_uri="https://data.hubei.example/zhida/",
        publisher_code=hb.uscc,
        publisher_name=hb.name,
    )
    assert doc["@context"] == DCAT_CONTEXT
    assert DCAT_CONTEXT["dcat"] == "http://www.w3.org/ns/dcat#"
    assert DCAT_CONTEXT["dct"] == "http://purl.org/dc/terms/"
    assert doc["@type"] == "dcat:Catalog"
    assert doc["@id"] == "https://data.hubei.example/zhida/catalog"
    datasets = doc["dcat:dataset"]
    assert isinstance(datasets, list)
    assert len(datasets) == len(resources)
    ds = next(d for d in datasets if d["dct:identifier"] == "1-05-001-0000-000001")
    assert ds["@type"] == "dcat:Dataset"
    assert ds["@id"] == "https://data.hubei.example/zhida/resources/1-05-001-0000-000001"
    assert ds["dct:title"] == {"@value": "出生医学证明信息", "@language": "zh"}
    assert ds["dct:publisher"]["dct:identifier"] == DEPARTMENTS["hb-health"].uscc
    assert ds["dct:spatial"]["dct:identifier"] == "420000"
    assert ds["dct:accessRights"]["@id"].endswith("/access-right/RESTRICTED")
    assert ds["dct:accrualPeriodicity"]["@id"].endswith("/frequency/UPDATE_CONT")
    (dist,) = ds["dcat:distribution"]
    assert dist["@type"] == "dcat:Distribution"
    assert dist["dcat:accessURL"].startswith("https://")
    columns = dist["csvw:tableSchema"]["csvw:column"]
    assert columns[3] == {
        "@type": "csvw:Column",
        "csvw:name": "出生日期",
        "csvw:datatype": "xsd:date",
    }
    json.dumps(doc, ensure_ascii=False)  # plain JSON all the way down
