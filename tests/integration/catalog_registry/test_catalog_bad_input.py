"""Every class of bad input from issue 3, over the wire, as rich errors naming the fields.

Invalid codes, USCCs, region codes and share types; related codes naming no
resource; an empty legal basis on a negative-list entry; unknown resources;
duplicate codes; a change by a department that does not own the resource; a
bulk import with one bad row (nothing imported, the row named); a resource
of another region at a county node. Each error is decoded with
``zhida.client.error_details``.
"""

from __future__ import annotations

import dataclasses

import pytest

from catalog_registry import wire
from catalog_registry.client import load_sample
from catalog_registry.model import ResourceCode, ResourceSpec
from catalog_registry.sample_data import DEPARTMENTS, sample_for_node, sample_resources
from tests.fixtures.node import NodeFactory, NodeHandle
from tests.integration.catalog_registry.support import Caller, failure, fields, stub
from zhida.auth.principal import Role
from zhida.catalog.v1 import catalog_service_pb2 as pb
from zhida.catalog.v1 import catalog_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

POLICE = DEPARTMENTS["wh-police"]


@pytest.fixture(scope="module")
def caller(node: NodeHandle) -> Caller:
    return Caller(node)


@pytest.fixture(scope="module")
def catalog(node: NodeHandle) -> pb_grpc.CatalogServiceStub:
    return stub(node)


def _police_spec(sequence: int, **changes: object) -> pb.ResourceSpec:
    base = next(s for s in sample_resources() if s.provider_code == POLICE.uscc)
    spec: ResourceSpec = dataclasses.replace(
        base, code=dataclasses.replace(base.code, sequence=sequence)
    )
    message = wire.spec_to_pb(spec)
    for name, value in changes.items():
        setattr(message, name, value)
    return message


def _register(catalog: pb_grpc.CatalogServiceStub, caller: Caller, spec: pb.ResourceSpec) -> None:
    catalog.RegisterResource(
        pb.RegisterResourceRequest(resource=spec), metadata=caller.dept("wh-police")
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"code": "9-01-001-0000-000001"}, "code"),  # class 9 does not exist
        ({"code": "1-01-001"}, "code"),
        ({"provider_code": "114201000001200108"}, "provider_code"),  # wrong check character
        ({"provider_code": "ABC"}, "provider_code"),
        ({"region_code": "990000"}, "region_code"),
        ({"region_code": "42"}, "region_code"),
        ({"share_type": pb.SHARE_TYPE_UNSPECIFIED}, "share_type"),
        ({"share_type": 42}, "share_type"),  # a number the enum does not define
        ({"name": ""}, "name"),
    ],
)
def test_invalid_resource_fields(
    catalog: pb_grpc.CatalogServiceStub, caller: Caller, change: dict[str, object], field: str
) -> None:
    error = failure(_register, catalog, caller, _police_spec(900, **change))
    assert (error.code.name, error.reason) == ("INVALID_ARGUMENT", "INVALID_RESOURCE")
    assert field in fields(error), error


def test_invalid_item_share_type_names_the_item(
    catalog: pb_grpc.CatalogServiceStub, caller: Caller
) -> None:
    spec = _police_spec(901)
    spec.items[1].type = pb.DATA_TYPE_UNSPECIFIED
    spec.items[2].share_type = pb.SHARE_TYPE_UNCONDITIONAL  # looser than the resource's
    error = failure(_register, catalog, caller, spec)
    assert set(fields(error)) == {"items[1].type", "items[2].share_type"}


def test_duplicate_code(catalog: pb_grpc.CatalogServiceStub, caller: Caller) -> None:
    _register(catalog, caller, _police_spec(902))
    error = failure(_register, catalog, caller, _police_spec(902))
    assert (error.code.name, error.reason) == ("ALREADY_EXISTS", "RESOURCE_EXISTS")
    assert error.metadata["code"] == "1-01-001-0000-000902"
    assert fields(error) == ["code"]
    assert "1-01-001-0000-000902" in error.violations[0].description


def test_related_codes_must_name_known_resources(
    catalog: pb_grpc.CatalogServiceStub, caller: Caller
) -> None:
    _register(catalog, caller, _police_spec(906))
    spec = _police_spec(907)
    spec.related_codes.extend(["1-01-001-0000-000906", "1-01-001-0000-099999"])
    error = failure(_register, catalog, caller, spec)
    assert (error.code.name, error.reason) == ("INVALID_ARGUMENT", "INVALID_RESOURCE")
    assert fields(error) == ["related_codes[1]"]
    del spec.related_codes[1]
    _register(catalog, caller, spec)


def test_unknown_resource(catalog: pb_grpc.CatalogServiceStub, caller: Caller) -> None:
    for call, request, md in (
        (catalog.GetResource, pb.GetResourceRequest(code="1-01-001-0000-099999"), caller.admin),
        (catalog.PublishResource, pb.PublishResourceRequest(code="1-01-001-0000-099999"),
         caller.dept("wh-police")),
        (catalog.AddNegativeEntry, pb.AddNegativeEntryRequest(
            resource_code="1-01-001-0000-099999", legal_basis="《个人信息保护法》"), caller.admin),
    ):  # fmt: skip
        error = failure(call, request, metadata=md)
        assert (error.code.name, error.reason) == ("NOT_FOUND", "RESOURCE_NOT_FOUND"), call
    bad = failure(
        catalog.GetResource, pb.GetResourceRequest(code="nonsense"), metadata=caller.admin
    )
    assert (bad.code.name, fields(bad)) == ("INVALID_ARGUMENT", ["code"])


def test_negative_entry_needs_a_legal_basis(
    catalog: pb_grpc.CatalogServiceStub, caller: Caller
) -> None:
    _register(catalog, caller, _police_spec(903))
    for basis in ("", "   "):
        error = failure(
            catalog.AddNegativeEntry,
            pb.AddNegativeEntryRequest(resource_code="1-01-001-0000-000903", legal_basis=basis),
            metadata=caller.admin,
        )
        assert (error.code.name, error.reason) == ("INVALID_ARGUMENT", "INVALID_NEGATIVE_ENTRY")
        assert fields(error) == ["legal_basis"]
    unknown_item = failure(
        catalog.AddNegativeEntry,
        pb.AddNegativeEntryRequest(
            resource_code="1-01-001-0000-000903", item_names=["无此项"], legal_basis="依据"
        ),
        metadata=caller.admin,
    )
    assert fields(unknown_item) == ["item_names[0]"]
    not_admin = failure(
        catalog.AddNegativeEntry,
        pb.AddNegativeEntryRequest(resource_code="1-01-001-0000-000903", legal_basis="依据"),
        metadata=caller.dept("wh-police"),
    )
    assert (not_admin.code.name, not_admin.reason) == ("PERMISSION_DENIED", "ROLE_NOT_ALLOWED")


def test_change_by_a_department_that_does_not_own_it(
    catalog: pb_grpc.CatalogServiceStub, caller: Caller
) -> None:
    _register(catalog, caller, _police_spec(904))
    other = caller.dept("wh-samr")
    for call, request in (
        (catalog.PublishResource, pb.PublishResourceRequest(code="1-01-001-0000-000904")),
        (catalog.UpdateResource, pb.UpdateResourceRequest(resource=_police_spec(904))),
        (catalog.RetireResource, pb.RetireResourceRequest(code="1-01-001-0000-000904")),
        (catalog.RegisterResource, pb.RegisterResourceRequest(resource=_police_spec(905))),
    ):
        error = failure(call, request, metadata=other)
        assert (error.code.name, error.reason) == ("PERMISSION_DENIED", "NOT_RESOURCE_OWNER"), call
        assert error.metadata["provider_code"] == POLICE.uscc
    auditor = failure(
        catalog.PublishResource,
        pb.PublishResourceRequest(code="1-01-001-0000-000904"),
        metadata=caller.role(Role.AUDITOR),
    )
    assert (auditor.code.name, auditor.reason) == ("PERMISSION_DENIED", "ROLE_NOT_ALLOWED")


def test_bulk_import_with_one_bad_row_imports_nothing(
    catalog: pb_grpc.CatalogServiceStub, caller: Caller
) -> None:
    header = "code,name,description,provider_code,provider_name,region_code,share_type,items\n"
    row = (
        "{code},{name},说明,{uscc},武汉市公安局,420100,无条件共享,姓名:string;公民身份号码:string\n"
    )
    good = [row.format(code=f"3-11-009-0000-00000{i}", name=f"测试资源{i}", uscc=POLICE.uscc)
            for i in (1, 3)]  # fmt: skip
    bad = row.format(code="3-11-009-0000-000002", name="坏行", uscc="114201000001200108")
    content = header + good[0] + bad + good[1]
    md = caller.dept("wh-police")
    error = failure(
        catalog.ImportResources,
        pb.ImportResourcesRequest(format=pb.FILE_FORMAT_CSV, content=content),
        metadata=md,
    )
    assert (error.code.name, error.reason) == ("INVALID_ARGUMENT", "INVALID_IMPORT")
    assert fields(error) == ["rows[2].provider_code"]
    assert "row" in error.message
    assert "nothing was imported" in error.message
    missing = failure(
        catalog.GetResource, pb.GetResourceRequest(code="3-11-009-0000-000001"), metadata=md
    )
    assert missing.code.name == "NOT_FOUND"
    fixed = content.replace("114201000001200108", POLICE.uscc)
    reply = catalog.ImportResources(
        pb.ImportResourcesRequest(format=pb.FILE_FORMAT_CSV, content=fixed), metadata=md
    )
    assert list(reply.codes) == [f"3-11-009-0000-00000{i}" for i in (1, 2, 3)]


def test_bad_search_and_page_tokens(catalog: pb_grpc.CatalogServiceStub, caller: Caller) -> None:
    md = caller.dept("wh-police")
    error = failure(
        catalog.SearchResources,
        pb.SearchResourcesRequest(
            region_code="12345", provider_code="x", level=pb.Level.ValueType(9), page_size=500
        ),
        metadata=md,
    )
    assert set(fields(error)) == {"level"}  # enums first: nothing else is looked at
    error = failure(
        catalog.SearchResources,
        pb.SearchResourcesRequest(region_code="12345", provider_code="x", page_size=500),
        metadata=md,
    )
    assert set(fields(error)) == {"region_code", "provider_code", "page_size"}
    token = failure(
        catalog.SearchResources, pb.SearchResourcesRequest(page_token="garbage"), metadata=md
    )
    assert (token.reason, fields(token)) == ("INVALID_PAGE_TOKEN", ["page_token"])
    drafts = failure(
        catalog.SearchResources,
        pb.SearchResourcesRequest(statuses=[pb.RESOURCE_STATUS_DRAFT]),
        metadata=md,
    )
    assert drafts.reason == "DRAFTS_NOT_VISIBLE"


def test_wanted_codes_of_a_demand_are_checked(
    catalog: pb_grpc.CatalogServiceStub, caller: Caller
) -> None:
    ja = DEPARTMENTS["ja-gov"]
    spec = pb.DemandSpec(
        requester_code=ja.uscc, requester_name=ja.name, purpose="p", legal_basis="",
        region_scope="420102", wanted_codes=["1-01-001-0000-000001", "bad"],
    )  # fmt: skip
    error = failure(
        catalog.FileDemand, pb.FileDemandRequest(demand=spec), metadata=caller.dept("ja-gov")
    )
    assert (error.reason, fields(error)) == ("INVALID_DEMAND", ["wanted_codes[1]"])
    del spec.wanted_codes[1]
    error = failure(
        catalog.FileDemand, pb.FileDemandRequest(demand=spec), metadata=caller.dept("ja-gov")
    )
    assert (error.reason, fields(error)) == ("INVALID_DEMAND", ["legal_basis"])
    assert ResourceCode.parse(spec.wanted_codes[0]).text == "1-01-001-0000-000001"


@pytest.fixture(scope="module")
def county(node_factory: NodeFactory) -> NodeHandle:
    """A county node (江岸区 420102, the configuration's default region)."""
    handle = node_factory.start(name="catalog-county")
    assert handle.config.node.region_code == "420102"
    return handle


def test_a_county_node_refuses_resources_of_other_regions(county: NodeHandle) -> None:
    caller, catalog = Caller(county), stub(county)
    error = failure(_register, catalog, caller, _police_spec(910))  # 武汉市公安局: 420100
    assert (error.code.name, error.reason) == ("INVALID_ARGUMENT", "OUTSIDE_NODE_REGION")
    assert [(v.field, v.description) for v in error.violations] == [
        ("region_code", "must be within this node's region 420102")
    ]
    header = "code,name,provider_code,provider_name,region_code,share_type,items\n"
    row = (
        f"3-11-009-0000-000010,武汉资源,{POLICE.uscc},武汉市公安局,420100,无条件共享,姓名:string\n"
    )
    imported = failure(
        catalog.ImportResources,
        pb.ImportResourcesRequest(format=pb.FILE_FORMAT_CSV, content=header + row),
        metadata=caller.admin,
    )
    assert (imported.reason, fields(imported)) == ("INVALID_IMPORT", ["rows[1].region_code"])
    # The sample loads only the county's part: its own resources and departments' demands.
    loaded = load_sample(catalog, caller.by_uscc, region="420102")
    part = sample_for_node("420102")
    assert {r.spec.code for r in loaded.resources} == {s.code.text for s in part.resources}
    assert {r.spec.region_code for r in loaded.resources} == {"420102"}
    assert {m.demand.spec.requester_code for m in loaded.demands} == {DEPARTMENTS["ja-gov"].uscc}
    moved = pb.ResourceSpec()
    moved.CopyFrom(loaded.resources[0].spec)
    moved.region_code = "420100"
    owner = caller.by_uscc(moved.provider_code)
    error = failure(
        catalog.UpdateResource, pb.UpdateResourceRequest(resource=moved), metadata=owner
    )
    assert (error.reason, fields(error)) == ("OUTSIDE_NODE_REGION", ["region_code"])
