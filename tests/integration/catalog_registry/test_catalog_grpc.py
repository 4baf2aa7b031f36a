"""CatalogService on a real node: the sample catalogue over the wire, then every list.

One national node (SQLite) per module, so the whole sample is within its
region; the sample catalogue is loaded once through gRPC exactly as
``zhida catalog load-sample`` does, by each provider department with the
admin filling the negative list.
"""

from __future__ import annotations

import json

import pytest

from catalog_registry import wire
from catalog_registry.client import LoadedSample, load_sample
from catalog_registry.sample_data import DEPARTMENTS, PIPL_28, sample_catalogue
from tests.fixtures.node import NodeHandle
from tests.integration.catalog_registry.support import Caller, failure, fields, stub
from zhida.audit.v1 import audit_service_pb2 as audit_pb
from zhida.audit.v1 import audit_service_pb2_grpc as audit_grpc
from zhida.auth.principal import Role
from zhida.catalog.v1 import catalog_service_pb2 as pb
from zhida.catalog.v1 import catalog_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

BIRTH = "1-05-001-0000-000001"  # 出生医学证明信息, 湖北省卫生健康委员会
HOUSEHOLD = "1-01-001-0000-000002"  # 居民户籍登记信息, 武汉市公安局; 人像照片 negative-listed


@pytest.fixture(scope="module")
def caller(node: NodeHandle) -> Caller:
    return Caller(node)


@pytest.fixture(scope="module")
def catalog(node: NodeHandle) -> pb_grpc.CatalogServiceStub:
    return stub(node)


@pytest.fixture(scope="module")
def loaded(node: NodeHandle, catalog: pb_grpc.CatalogServiceStub, caller: Caller) -> LoadedSample:
    return load_sample(catalog, caller.by_uscc, region=node.config.node.region_code)


def test_sample_round_trip(loaded: LoadedSample) -> None:
    cat = sample_catalogue()
    assert len(loaded.resources) == len(cat.resources)
    assert all(
        r.status == pb.RESOURCE_STATUS_PUBLISHED and r.version == 2 for r in loaded.resources
    )
    assert {r.spec.code for r in loaded.resources} == {s.code.text for s in cat.resources}
    # What went over the wire comes back unchanged.
    first = wire.spec_from_pb(loaded.resources[0].spec)
    assert first == cat.resources[0]


def test_search_get_history_supply(
    loaded: LoadedSample, catalog: pb_grpc.CatalogServiceStub, caller: Caller
) -> None:
    md = caller.dept("ja-gov")
    page = catalog.SearchResources(
        pb.SearchResourcesRequest(keywords="营业执照", page_size=1), metadata=md
    )
    assert page.hits[0].resource.spec.name == "市场主体登记信息(营业执照)"
    assert page.hits[0].score == 1000
    assert page.next_page_token
    more = catalog.SearchResources(
        pb.SearchResourcesRequest(
            keywords="营业执照", page_size=1, page_token=page.next_page_token
        ),
        metadata=md,
    )
    assert more.hits[0].resource.spec.code != page.hits[0].resource.spec.code
    hubei = catalog.SearchResources(
        pb.SearchResourcesRequest(
            keywords="营业执照", region_code="420000", include_subregions=True
        ),
        metadata=md,
    )
    assert {h.resource.spec.region_code[:2] for h in hubei.hits} == {"42"}
    english = catalog.SearchResources(pb.SearchResourcesRequest(keywords="OFD"), metadata=md)
    assert list(english.hits) == []

    got = catalog.GetResource(pb.GetResourceRequest(code="1050010000000001"), metadata=md)
    assert got.resource.spec.code == BIRTH  # compact code form accepted, canonical returned
    provider = caller.dept("hb-health")  # sees its drafts; others only published versions
    history = catalog.ListResourceHistory(
        pb.ListResourceHistoryRequest(code=BIRTH, page_size=1), metadata=provider
    )
    assert [v.status for v in history.versions] == [pb.RESOURCE_STATUS_DRAFT]
    rest = catalog.ListResourceHistory(
        pb.ListResourceHistoryRequest(code=BIRTH, page_token=history.next_page_token),
        metadata=provider,
    )
    assert [v.version for v in rest.versions] == [2]
    assert not rest.next_page_token
    public = catalog.ListResourceHistory(pb.ListResourceHistoryRequest(code=BIRTH), metadata=md)
    assert [v.version for v in public.versions] == [2]

    supply = catalog.GetSupplyList(
        pb.GetSupplyListRequest(provider_code=DEPARTMENTS["wh-police"].uscc), metadata=md
    )
    (entry,) = supply.entries
    assert entry.code == HOUSEHOLD
    assert list(entry.withheld_items) == ["人像照片"]  # marked not shared and negative-listed
    assert "人像照片" not in [i.name for i in entry.offered_items]
    assert entry.delivery_service == "hosted"  # the node's hosted provider delivers it
    wuhan = catalog.GetSupplyList(
        pb.GetSupplyListRequest(region_code="420100", page_size=100), metadata=md
    )
    assert {e.region_code for e in wuhan.entries} == {"420100", "420102"}  # and below
    expected = {
        s.code.text for s in sample_catalogue().resources if s.region_code in ("420100", "420102")
    }
    assert {e.code for e in wuhan.entries} == expected
    biometric = catalog.GetSupplyList(
        pb.GetSupplyListRequest(region_code="100000", provider_code=DEPARTMENTS["mps"].uscc),
        metadata=md,
    )
    whole = next(e for e in biometric.entries if e.code == "1-01-003-0000-000004")
    assert (whole.delivery_service, list(whole.offered_items)) == ("", [])  # not shared


def test_update_keeps_history_and_checks_the_version(
    loaded: LoadedSample, catalog: pb_grpc.CatalogServiceStub, caller: Caller
) -> None:
    md = caller.dept("wh-water")
    current = catalog.GetResource(pb.GetResourceRequest(code="3-12-001-0000-000013"), metadata=md)
    spec = pb.ResourceSpec()
    spec.CopyFrom(current.resource.spec)
    spec.description = "排水许可，含排水类别"
    updated = catalog.UpdateResource(
        pb.UpdateResourceRequest(resource=spec, expected_version=current.resource.version),
        metadata=md,
    )
    assert updated.resource.version == current.resource.version + 1
    stale = failure(
        catalog.UpdateResource,
        pb.UpdateResourceRequest(resource=spec, expected_version=current.resource.version),
        metadata=md,
    )
    assert (stale.code.name, stale.reason) == ("ABORTED", "VERSION_CONFLICT")


def test_demands_matches_and_todo(
    loaded: LoadedSample, catalog: pb_grpc.CatalogServiceStub, caller: Caller
) -> None:
    newborn = loaded.demands[0]
    assert newborn.met
    assert newborn.candidates[0].code == BIRTH
    assert pb.MATCH_REASON_SIMILAR_NAME in newborn.candidates[0].reasons
    restaurant = next(m for m in loaded.demands if "营业执照" in m.demand.spec.wanted_text)
    assert restaurant.met
    assert "营业执照" in restaurant.candidates[0].name
    mine = catalog.ListDemands(pb.ListDemandsRequest(), metadata=caller.dept("ja-gov"))
    assert {m.demand.spec.requester_code for m in mine.demands} == {DEPARTMENTS["ja-gov"].uscc}
    assert len(mine.demands) == 3
    others = failure(
        catalog.ListDemands,
        pb.ListDemandsRequest(requester_code=DEPARTMENTS["js-approval"].uscc),
        metadata=caller.dept("ja-gov"),
    )
    assert (others.code.name, others.reason) == ("PERMISSION_DENIED", "NOT_OWN_ORGANISATION")
    unmet = catalog.ListDemands(
        pb.ListDemandsRequest(unmet_only=True, page_size=1), metadata=caller.admin
    )
    assert len(unmet.demands) == 1
    assert not unmet.demands[0].met
    assert unmet.next_page_token
    report = catalog.GetUnmetDemandReport(pb.GetUnmetDemandReportRequest(), metadata=caller.admin)
    wanted = {u.demand.spec.wanted_text for t in report.todos for u in t.demands}
    assert {"残疾人证信息", "需要职工人事档案信息"} <= wanted
    civil = DEPARTMENTS["wh-civil"].uscc
    own = catalog.GetUnmetDemandReport(
        pb.GetUnmetDemandReportRequest(), metadata=caller.dept("wh-civil")
    )
    assert [
        (t.provider_code, [u.demand.spec.wanted_text for u in t.demands]) for t in own.todos
    ] == [(civil, ["需要婚姻信息"])]


def test_negative_list_and_release_checks(
    loaded: LoadedSample, catalog: pb_grpc.CatalogServiceStub, caller: Caller
) -> None:
    md = caller.role(Role.NODE)
    refused = catalog.CheckRelease(
        pb.CheckReleaseRequest(resource_code=HOUSEHOLD, item_name="人像照片"), metadata=md
    )
    assert not refused.allowed
    assert refused.reason == "NEGATIVE_LISTED"
    assert refused.legal_basis == PIPL_28
    assert refused.entry.item_names == ["人像照片"]
    allowed = catalog.CheckRelease(
        pb.CheckReleaseRequest(resource_code=HOUSEHOLD, item_name="姓名"), metadata=md
    )
    assert allowed.allowed
    assert allowed.share_type == pb.SHARE_TYPE_CONDITIONAL
    listed = catalog.ListNegativeEntries(
        pb.ListNegativeEntriesRequest(page_size=2), metadata=caller.dept("ja-gov")
    )
    assert len(listed.entries) == 2
    assert listed.next_page_token
    # Listing an item of a published, shareable resource: releases stop at once ...
    code = "3-15-001-0000-000024"  # 婚姻登记信息
    catalog.AddNegativeEntry(
        pb.AddNegativeEntryRequest(resource_code=code, item_names=["女方公民身份号码"],
                                   legal_basis=PIPL_28),
        metadata=caller.admin,
    )  # fmt: skip
    check = pb.CheckReleaseRequest(resource_code=code, item_name="女方公民身份号码")
    assert not catalog.CheckRelease(check, metadata=md).allowed
    # ... and the provider's next update must mark the item not shared.
    current = catalog.GetResource(pb.GetResourceRequest(code=code), metadata=caller.admin)
    error = failure(
        catalog.UpdateResource,
        pb.UpdateResourceRequest(resource=current.resource.spec),
        metadata=caller.dept("wh-civil"),
    )
    assert (error.code.name, error.reason) == ("FAILED_PRECONDITION", "NEGATIVE_LISTED_SHAREABLE")
    assert fields(error) == ["items[3].share_type"]
    catalog.RemoveNegativeEntry(
        pb.RemoveNegativeEntryRequest(resource_code=code, item_names=["女方公民身份号码"]),
        metadata=caller.admin,
    )
    assert catalog.CheckRelease(check, metadata=md).allowed


def test_coverage_report(
    loaded: LoadedSample, catalog: pb_grpc.CatalogServiceStub, caller: Caller
) -> None:
    report = catalog.GetCoverageReport(pb.GetCoverageReportRequest(), metadata=caller.admin)
    by_region = {r.region_code: r for r in report.regions}
    assert sum(r.resources_supplied for r in report.regions) == len(loaded.resources)
    assert sum(r.demands_filed for r in report.regions) == len(loaded.demands)
    assert by_region["420102"].demands_filed == 3
    assert sum(r.negative_listed_items for r in report.departments) >= 3


def test_export_catalog_and_change_feed(
    loaded: LoadedSample, catalog: pb_grpc.CatalogServiceStub, caller: Caller
) -> None:
    chunks = list(
        catalog.ExportCatalog(
            pb.ExportCatalogRequest(format=pb.EXPORT_FORMAT_DCAT_JSONLD), metadata=caller.admin
        )
    )
    assert chunks[0].media_type == "application/ld+json"
    document = json.loads(b"".join(c.chunk for c in chunks))
    assert document["@type"] == "dcat:Catalog"
    assert len(document["dcat:dataset"]) == chunks[0].resource_count == len(loaded.resources)
    rows = json.loads(
        b"".join(
            c.chunk
            for c in catalog.ExportCatalog(
                pb.ExportCatalogRequest(format=pb.EXPORT_FORMAT_JSON), metadata=caller.admin
            )
        )
    )
    assert {r["code"] for r in rows} == {r.spec.code for r in loaded.resources}

    feed = catalog.ExportChanges(
        pb.ExportChangesRequest(since_cursor=0, page_size=5), metadata=caller.role(Role.NODE)
    )
    assert [c.sequence for c in feed.changes] == [1, 2, 3, 4, 5]
    assert feed.next_cursor == 5
    assert feed.changes[0].origin_region == "100000"  # the node's own region
    refused = failure(
        catalog.ExportChanges, pb.ExportChangesRequest(), metadata=caller.dept("ja-gov")
    )
    assert (refused.code.name, refused.reason) == ("PERMISSION_DENIED", "ROLE_NOT_ALLOWED")


def test_changes_are_in_the_audit_log(loaded: LoadedSample, node: NodeHandle) -> None:
    auditor = node.auth(role="auditor")
    stub_ = audit_grpc.AuditServiceStub(node.channel())
    page = stub_.SearchEvents(
        audit_pb.SearchEventsRequest(actions=["catalog.change"], resource=BIRTH), metadata=auditor
    )
    assert [e.details["change"] for e in page.events][:2] == ["register", "publish"]
    listed = stub_.SearchEvents(
        audit_pb.SearchEventsRequest(actions=["negative_list.change"]), metadata=auditor
    )
    assert listed.events
    assert listed.events[0].legal_basis == PIPL_28
