"""跨省通办 on the local federation: a licence issued in 湖南 fetched for an application in 湖北.

One federation for the module (national, 湖北, 湖南, 武汉, 江岸区). 湖南省市场监督管理局
issues a 营业执照 at 430000; the node indexes it and the background push carries the
entry to national. The holder consents at 430000 (where its licences are) to the
湖北 portal's organisation; the portal asks its own node (420000, or the 江岸区 node),
which finds the holding node through the index chain and forwards the fetch there
(signed assertion, custody chain, every hop audited). The JWS verifies offline with
``<base>/trust.json``. Without consent the 湖南 vault's refusal comes back through the
hops; for a holder nobody knows the origin answers NOT_FOUND.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from catalog_registry.sample_tables import make_uscc
from exchange.federation.local import LOCAL_DEPARTMENTS, LocalFederation
from licence_vault.types import BUSINESS_LICENCE
from signing.bundle import VerifierBundle
from signing.verify import verify_document
from tests.integration.catalog_registry.support import failure
from zhida.audit.v1 import audit_service_pb2 as apb
from zhida.audit.v1 import audit_service_pb2_grpc as apb_grpc
from zhida.auth.principal import Role
from zhida.client import bearer
from zhida.federation.v1 import licence_index_pb2 as ipb
from zhida.federation.v1 import licence_index_pb2_grpc as ipb_grpc
from zhida.licence.v1 import licence_vault_service_pb2 as lpb
from zhida.licence.v1 import licence_vault_service_pb2_grpc as lpb_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

T = TypeVar("T")
REGIONS = ("100000", "420000", "430000", "420100", "420102")
HUNAN_SAMR = LOCAL_DEPARTMENTS["湖南省市场监督管理局"]
SHOP = make_uscc("430100", 880001, kind="91")  # a 长沙 restaurant opening a branch in 湖北
SHOP_NAME = "长沙湘味餐饮有限公司"
PORTAL = make_uscc("420000", 20099)  # 湖北省政务服务和大数据管理局 (the application)
MATTER = "YJS-KBCYD"  # 开办餐饮店: consent needed, no legal basis
FETCH = "/zhida.licence.v1.LicenceVaultService/FetchLicences"


def eventually(probe: Callable[[], T | None], *, within: float = 20.0, what: str = "") -> T:
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f}s: {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    fed = LocalFederation.start(tmp_path_factory.mktemp("cross-province"), REGIONS)
    try:
        yield fed
    finally:
        codes = fed.stop()
        assert codes == dict.fromkeys(fed.plans, 0), codes


def vault(fed: LocalFederation, region: str) -> lpb_grpc.LicenceVaultServiceStub:
    return lpb_grpc.LicenceVaultServiceStub(grpc.insecure_channel(fed.nodes[region].address))


def locate_at_national(fed: LocalFederation, holder_id: str) -> ipb.LocateHolderResponse:
    stub = ipb_grpc.LicenceIndexServiceStub(grpc.insecure_channel(fed.nodes["100000"].address))
    md = bearer(fed.token_for("100000", Role.ADMIN))
    return stub.LocateHolder(ipb.LocateHolderRequest(holder_id=holder_id), metadata=md, timeout=10)


@pytest.fixture(scope="module")
def issued(federation: LocalFederation) -> lpb.IssueLicenceResponse:
    fields = {
        "统一社会信用代码": SHOP, "名称": SHOP_NAME, "类型": "有限责任公司",
        "法定代表人": "李四", "成立日期": "2023-05-08", "住所": "长沙市芙蓉区五一大道200号",
        "经营范围": "餐饮服务", "登记机关": "湖南省市场监督管理局",
    }  # fmt: skip
    draft = lpb.LicenceDraft(
        request_id="cross-province-1", type_code=BUSINESS_LICENCE.code, holder_code=SHOP,
        holder_name=SHOP_NAME, data=fields,
    )  # fmt: skip
    md = bearer(federation.token_for("430000", Role.ISSUER, organisation=HUNAN_SAMR))
    reply = vault(federation, "430000").IssueLicence(
        lpb.IssueLicenceRequest(draft=draft), metadata=md, timeout=60
    )
    assert reply.jws

    def at_national() -> ipb.LocateHolderResponse | None:
        where = locate_at_national(federation, SHOP)
        return where if where.entries else None

    eventually(at_national, within=30, what="the 湖南 licence in the national index")
    return reply


@pytest.fixture(scope="module")
def consent_id(federation: LocalFederation, issued: lpb.IssueLicenceResponse) -> str:
    """The holder's consent, given at the node holding its licences (湖南)."""
    until = Timestamp()
    until.FromDatetime(datetime.now(UTC) + timedelta(days=30))
    md = bearer(federation.token_for("430000", Role.HOLDER, subject=SHOP))
    reply = vault(federation, "430000").GrantConsent(
        lpb.GrantConsentRequest(
            organisation=PORTAL,
            type_codes=[BUSINESS_LICENCE.code],
            matter_code=MATTER,
            valid_until=until,
        ),
        metadata=md,
        timeout=30,
    )
    return reply.consent.consent_id


def fetch_request(consent: str = "", holder: str = SHOP) -> lpb.FetchLicencesRequest:
    return lpb.FetchLicencesRequest(
        holder_code=holder, type_codes=[BUSINESS_LICENCE.code], matter_code=MATTER,
        consent_id=consent,
    )  # fmt: skip


def portal(fed: LocalFederation, region: str, trace_id: str) -> tuple[tuple[str, str], ...]:
    token = fed.token_for(region, Role.APPLICATION, organisation=PORTAL, subject="portal")
    return (*bearer(token), ("x-trace-id", trace_id))


def trailer(call: Any, key: str) -> str:
    return next((v for k, v in call.trailing_metadata() or () if k == key), "")


def traced(fed: LocalFederation, region: str, trace_id: str, action: str) -> list[Any]:
    stub = apb_grpc.AuditServiceStub(grpc.insecure_channel(fed.nodes[region].address))
    md = bearer(fed.token_for(region, Role.AUDITOR))
    request = apb.SearchEventsRequest(actions=[action], page_size=1000)
    events = stub.SearchEvents(request, metadata=md, timeout=10).events
    return [e for e in events if e.trace_id == trace_id]


def test_the_hunan_licence_reaches_the_national_index(
    federation: LocalFederation, issued: lpb.IssueLicenceResponse
) -> None:
    where = locate_at_national(federation, SHOP)
    assert [(e.licence_id, e.type_code, e.region_code) for e in where.entries] == [
        (issued.licence.licence_id, BUSINESS_LICENCE.code, "430000")
    ]
    assert list(where.provinces) == ["430000"]
    assert where.answered_by == "100000"
    assert SHOP not in str(where)  # the index knows the holder by keyed hash only


def test_a_hubei_application_fetches_the_hunan_licence(
    federation: LocalFederation, issued: lpb.IssueLicenceResponse, consent_id: str
) -> None:
    trace = "trace-cross-province-1"
    reply, call = vault(federation, "420000").FetchLicences.with_call(
        fetch_request(consent_id), metadata=portal(federation, "420000", trace), timeout=30
    )
    assert trailer(call, "x-zhida-path") == "420000,100000,430000"
    assert reply.basis == lpb.FETCH_BASIS_CONSENT
    assert reply.consent_id == consent_id
    (fetched,) = reply.licences
    assert fetched.licence.licence_id == issued.licence.licence_id
    assert fetched.status == lpb.LICENCE_STATUS_VALID
    assert fetched.annotation.requester_organisation == PORTAL
    assert fetched.jws == issued.jws
    # verified offline with nothing but the deployment's trust bundle
    bundle = VerifierBundle.from_json(federation.trust_bundle_path.read_text(encoding="utf-8"))
    result = verify_document(fetched.jws.encode(), bundle.trust, bundle.registry())
    assert result.valid, result.message
    # every node on the way wrote its part under the one trace id; national answered the
    # look-up (the holder's keyed hash only) before it forwarded the fetch
    roles = {
        region: [e.details["federation"] for e in traced(federation, region, trace, "data.request")]
        for region in ("420000", "100000", "430000")
    }
    assert roles == {"420000": ["origin"], "100000": ["locate", "forward"], "430000": ["serve"]}
    (use,) = traced(federation, "430000", trace, "licence.fetch")
    assert use.licence_id == issued.licence.licence_id
    assert use.organisation == PORTAL


def test_the_county_fetch_passes_every_level(
    federation: LocalFederation, issued: lpb.IssueLicenceResponse, consent_id: str
) -> None:
    reply, call = vault(federation, "420102").FetchLicences.with_call(
        fetch_request(consent_id), metadata=portal(federation, "420102", "trace-cp-2"), timeout=30
    )
    assert trailer(call, "x-zhida-path") == "420102,420100,420000,100000,430000"
    assert [f.licence.licence_id for f in reply.licences] == [issued.licence.licence_id]
    # the look-up went up the chain as the nodes themselves, audited at each
    for region in ("420100", "420000", "100000"):
        locates = [
            e.details
            for e in traced(federation, region, "trace-cp-2", "data.request")
            if e.details["federation"] == "locate"
        ]
        assert locates, region
        assert locates[0]["regions"] == "430000", region


def test_without_consent_the_hunan_vault_refuses_through_the_hops(
    federation: LocalFederation, issued: lpb.IssueLicenceResponse, consent_id: str
) -> None:
    stub = vault(federation, "420000")
    md = portal(federation, "420000", "trace-cp-3")
    details = failure(stub.FetchLicences, fetch_request(), metadata=md, timeout=30)
    assert (details.code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CONSENT_REQUIRED")
    details = failure(
        stub.FetchLicences,
        fetch_request("0" * 32),
        metadata=portal(federation, "420000", "trace-cp-4"),
        timeout=30,
    )
    assert (details.code, details.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "CONSENT_NOT_FOUND",
    )
    (refused,) = traced(federation, "430000", "trace-cp-4", "licence.fetch")
    assert refused.reason == "CONSENT_NOT_FOUND"
    # another organisation cannot use the consent the holder gave the portal
    other = make_uscc("420000", 20100)
    md = bearer(federation.token_for("420000", Role.APPLICATION, organisation=other))
    details = failure(stub.FetchLicences, fetch_request(consent_id), metadata=md, timeout=30)
    assert details.reason == "CONSENT_WRONG_ORGANISATION"


def test_a_holder_nobody_knows_is_not_found(
    federation: LocalFederation, issued: lpb.IssueLicenceResponse
) -> None:
    stranger = make_uscc("440300", 770001, kind="91")
    details = failure(
        vault(federation, "420000").FetchLicences,
        fetch_request("0" * 32, holder=stranger),
        metadata=portal(federation, "420000", "trace-cp-5"),
        timeout=30,
    )
    assert (details.code, details.reason) == (grpc.StatusCode.NOT_FOUND, "LICENCE_HOLDER_UNKNOWN")
    (origin,) = traced(federation, "420000", "trace-cp-5", "data.request")
    assert origin.outcome == apb.OUTCOME_DENIED
    assert origin.reason == "LICENCE_HOLDER_UNKNOWN"


def test_a_county_licence_climbs_every_level_and_is_fetched_from_hunan(
    federation: LocalFederation,
) -> None:
    """江岸区 → 武汉 → 湖北 → national by the push loops; a 湖南 fetch comes down the chain."""
    diner = make_uscc("420102", 660001, kind="91")
    fields = {
        "统一社会信用代码": diner, "名称": "武汉江滩小吃有限公司", "类型": "有限责任公司",
        "法定代表人": "王五", "成立日期": "2022-09-01", "住所": "武汉市江岸区沿江大道8号",
        "经营范围": "餐饮服务", "登记机关": "武汉市江岸区市场监督管理局",
    }  # fmt: skip
    draft = lpb.LicenceDraft(
        request_id="cross-province-county", type_code=BUSINESS_LICENCE.code, holder_code=diner,
        holder_name="武汉江滩小吃有限公司", data=fields,
    )  # fmt: skip
    jiangan = LOCAL_DEPARTMENTS["武汉市江岸区市场监督管理局"]
    md = bearer(federation.token_for("420102", Role.ISSUER, organisation=jiangan))
    issued = vault(federation, "420102").IssueLicence(
        lpb.IssueLicenceRequest(draft=draft), metadata=md, timeout=60
    )

    def at_national() -> ipb.LocateHolderResponse | None:
        where = locate_at_national(federation, diner)
        return where if where.entries else None

    where = eventually(at_national, within=30, what="the county licence in the national index")
    assert (list(where.regions), list(where.provinces)) == (["420102"], ["420000"])
    # a 湖南 department under a legal basis (no consent): down through 湖北, 武汉, 江岸区
    dept = bearer(federation.token_for("430000", Role.DEPARTMENT, organisation=HUNAN_SAMR))
    request = lpb.FetchLicencesRequest(
        holder_code=diner, type_codes=[BUSINESS_LICENCE.code], matter_code="YJS-QYPCHC"
    )
    reply, call = vault(federation, "430000").FetchLicences.with_call(
        request, metadata=dept, timeout=30
    )
    assert trailer(call, "x-zhida-path") == "430000,100000,420000,420100,420102"
    assert reply.basis == lpb.FETCH_BASIS_LEGAL_BASIS
    assert [f.jws for f in reply.licences] == [issued.jws]


def test_the_index_rpcs_are_for_nodes_over_mutual_tls(federation: LocalFederation) -> None:
    channel = grpc.insecure_channel(federation.nodes["420000"].address)
    stub = ipb_grpc.LicenceIndexServiceStub(channel)
    push = ipb.PushLicenceIndexRequest(
        entries=[ipb.LicenceIndexEntry(holder_ref="0" * 64, licence_id="x", type_code="y")]
    )
    admin = bearer(federation.token_for("420000", Role.ADMIN))
    details = failure(stub.PushLicenceIndex, push, metadata=admin, timeout=10)
    assert (details.code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
    details = failure(
        stub.LocateHolder, ipb.LocateHolderRequest(holder_ref="XYZ"), metadata=admin, timeout=10
    )
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_HOLDER")
