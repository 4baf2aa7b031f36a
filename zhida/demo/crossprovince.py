"""Demo chapter: 跨省通办 — a licence issued in 湖南, used for an application in 湖北.

长沙湘味餐饮有限公司, a 长沙 restaurant, opens a branch in 江岸区. Its 营业执照 was
issued by 湖南省市场监督管理局 at the 湖南 node (430000); the node indexes it
(holder as a keyed hash, no licence data) and the index climbs to national.
The holder consents, at 湖南 where its licences are, that the 江岸区 one-stop
window use the licence for 开办餐饮店. The window asks its own node: 江岸区 does
not hold it, asks up the chain where the holder's licences are (national's
index answers 430000) and forwards the fetch 江岸区 → 武汉 → 湖北 → 国家 → 湖南,
where the vault checks the consent against the asserted caller exactly as
for a local fetch. Another organisation is refused through the same five
nodes. The JWS is then verified offline with nothing but the deployment's
``trust.json`` and the issuer's signed status list, fetched once and cached.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from catalog_registry.sample_data import DEPARTMENTS
from catalog_registry.sample_tables import make_uscc
from exchange.federation.local import LOCAL_DEPARTMENTS
from licence_vault.offline import CachedNode, file_verifier
from licence_vault.types import BUSINESS_LICENCE
from signing.bundle import VerifierBundle
from zhida.auth.mint import DEMO_ORGS
from zhida.auth.principal import Role
from zhida.client import bearer
from zhida.demo import (
    CITY,
    COUNTY,
    HUNAN,
    NATIONAL,
    PROVINCE,
    DemoContext,
    DemoError,
    channel,
    federation,
    node_at,
)
from zhida.demo.support import (
    Metadata,
    check_path,
    eventually,
    hop_path,
    new_trace,
    refused,
    traced,
)
from zhida.federation.v1 import licence_index_pb2 as ipb
from zhida.federation.v1 import licence_index_pb2_grpc as ipb_grpc
from zhida.licence.v1 import licence_vault_service_pb2 as pb
from zhida.licence.v1 import licence_vault_service_pb2_grpc as pb_grpc

HUNAN_SAMR = LOCAL_DEPARTMENTS["湖南省市场监督管理局"]
SHOP = make_uscc("430100", 880001, kind="91")  # synthetic, valid check characters
SHOP_NAME = "长沙湘味餐饮有限公司"
WINDOW = DEPARTMENTS["ja-gov"]  # 江岸区政务服务和大数据管理局 runs the one-stop window
OTHER = DEMO_ORGS["湖北省公安厅"]
MATTER = "YJS-KBCYD"  # 开办餐饮店: the holder's consent is the basis
ROUTE = (COUNTY, CITY, PROVINCE, NATIONAL, HUNAN)
INDEX_WAIT = 30.0  # seconds; the index is pushed up every 0.5 s
TIMEOUT = 30.0


def _draft() -> pb.LicenceDraft:
    fields = {
        "统一社会信用代码": SHOP, "名称": SHOP_NAME, "类型": "有限责任公司",
        "法定代表人": "李四", "注册资本": "100万元人民币", "成立日期": "2023-05-08",
        "住所": "长沙市芙蓉区五一大道200号", "经营范围": "餐饮服务；食品销售",
        "登记机关": "湖南省市场监督管理局",
    }  # fmt: skip
    return pb.LicenceDraft(
        request_id="demo-hunan-yyzz-1", type_code=BUSINESS_LICENCE.code, holder_code=SHOP,
        holder_name=SHOP_NAME, data=fields,
    )  # fmt: skip


def _vault(ctx: DemoContext, region: str) -> pb_grpc.LicenceVaultServiceStub:
    return pb_grpc.LicenceVaultServiceStub(channel(ctx, region))


def _token(ctx: DemoContext, region: str, role: Role, org: str, subject: str) -> Metadata:
    return bearer(node_at(ctx, region).mint(role, organisation=org, subject=subject))


def chapter(ctx: DemoContext) -> None:
    out = ctx.console
    hunan = _vault(ctx, HUNAN)
    issuer = _token(ctx, HUNAN, Role.ISSUER, HUNAN_SAMR, "clerk@hn-samr")
    issued = hunan.IssueLicence(pb.IssueLicenceRequest(draft=_draft()), metadata=issuer, timeout=60)
    licence = issued.licence
    out.print(
        f"湖南省市场监督管理局 issues [bold]{licence.type_name}[/bold] {licence.licence_id}\n"
        f"  to {SHOP_NAME} ({SHOP}) at the 湖南 node, sealed; JWS {len(issued.jws)} chars"
    )
    where, waited = _indexed(ctx)
    out.print(
        f"the national licence index knows the holder after {waited:.1f} s: keyed hash "
        f"{where.holder_ref[:16]}… → region(s) {', '.join(where.regions)} (the index holds "
        "the holder as a keyed hash and no licence data)"
    )

    until = Timestamp()
    until.FromDatetime(datetime.now(UTC) + timedelta(days=7))
    holder = _token(ctx, HUNAN, Role.HOLDER, SHOP, SHOP)
    consent = hunan.GrantConsent(
        pb.GrantConsentRequest(
            organisation=WINDOW.uscc, type_codes=[BUSINESS_LICENCE.code], matter_code=MATTER,
            valid_until=until,
        ),
        metadata=holder, timeout=TIMEOUT,
    ).consent  # fmt: skip
    out.print(
        f"{SHOP_NAME} consents at 湖南: {WINDOW.name} ({WINDOW.uscc}) may use its 营业执照 "
        f"for 开办餐饮店 for 7 days (consent {consent.consent_id})"
    )

    fetch = pb.FetchLicencesRequest(
        holder_code=SHOP, type_codes=[BUSINESS_LICENCE.code], matter_code=MATTER,
        consent_id=consent.consent_id,
    )  # fmt: skip
    county = _vault(ctx, COUNTY)
    window = _token(ctx, COUNTY, Role.APPLICATION, WINDOW.uscc, "yiwangtongban@ja-gov")
    reply, call = county.FetchLicences.with_call(fetch, metadata=window, timeout=TIMEOUT)
    path = check_path("the licence fetch", hop_path(call), ROUTE)
    if reply.basis != pb.FETCH_BASIS_CONSENT or reply.consent_id != consent.consent_id:
        raise DemoError(f"the fetch was not made under the holder's consent: {reply.basis}")
    if [f.licence.licence_id for f in reply.licences] != [licence.licence_id]:
        raise DemoError(f"the fetch returned {[f.licence.licence_id for f in reply.licences]}")
    fetched = reply.licences[0]
    if fetched.jws != issued.jws or fetched.status != pb.LICENCE_STATUS_VALID:
        raise DemoError("the fetched licence is not the one 湖南 issued, or not valid")
    if fetched.annotation.requester_organisation != WINDOW.uscc:
        raise DemoError(f"the use was annotated for {fetched.annotation.requester_organisation}")
    out.print(
        f"the 江岸区 window fetches it at its own node for 开办餐饮店:\n"
        f"  routed {path}\n"
        f"  → {fetched.licence.type_name} {_status(fetched.status)}, basis: consent; "
        f"watermark '{fetched.annotation.watermark}'"
    )

    trace = new_trace()
    other = (*_token(ctx, COUNTY, Role.APPLICATION, OTHER, "someone-else"), ("x-trace-id", trace))
    refusal = refused(county.FetchLicences, fetch, other)
    if refusal.reason != "CONSENT_WRONG_ORGANISATION":
        raise DemoError(f"another organisation's fetch: {refusal}")
    decided = [e for e in traced(ctx, HUNAN, trace) if e.action == "licence.fetch"]
    if [e.reason for e in decided] != ["CONSENT_WRONG_ORGANISATION"]:
        raise DemoError(f"the 湖南 vault did not record the refusal: {decided}")
    out.print(
        f"湖北省公安厅 tries the same consent at 江岸区: [yellow]{refusal.code.name} "
        f"{refusal.reason}[/yellow] — refused by the 湖南 vault (in its log under trace "
        f"{trace}), passed back through every hop"
    )
    _verify_offline(ctx, fetched)


def _indexed(ctx: DemoContext) -> tuple[ipb.LocateHolderResponse, float]:
    stub = ipb_grpc.LicenceIndexServiceStub(channel(ctx, NATIONAL))
    admin = bearer(federation(ctx).token_for(NATIONAL, Role.ADMIN))

    def located() -> ipb.LocateHolderResponse | None:
        where = stub.LocateHolder(
            ipb.LocateHolderRequest(holder_id=SHOP), metadata=admin, timeout=TIMEOUT
        )
        return where if where.entries else None

    where, waited = eventually(located, within=INDEX_WAIT, what="the 湖南 licence at national")
    if list(where.regions) != [HUNAN] or SHOP in str(where):
        raise DemoError(f"the national index answered {where}")
    return where, waited


def _verify_offline(ctx: DemoContext, fetched: pb.FetchedLicence) -> None:
    out = ctx.console
    fed = federation(ctx)
    bundle = VerifierBundle.from_json(fed.trust_bundle_path.read_text(encoding="utf-8"))
    if len(bundle.trust.roots) != 1:
        raise DemoError(f"the deployment's bundle holds {len(bundle.trust.roots)} roots, not one")
    cache = ctx.data_dir / "cross-province-verifier"
    # The relying party caches the issuer's signed status list once (from the 湖南 node) …
    relying = _token(ctx, HUNAN, Role.APPLICATION, WINDOW.uscc, "verifier@ja-gov")
    CachedNode(cache, _vault(ctx, HUNAN), relying).status_list(fetched.licence.status_list_uri)
    # … and then needs no node at all: trust.json + the cached list.
    result = file_verifier(bundle, cache).verify(fetched.jws)
    if not result.valid:
        raise DemoError(f"the 湖南 licence does not verify offline: {result.reason}")
    status = result.status.name.lower() if result.status else "?"
    out.print(
        f"verified offline with {fed.trust_bundle_path.name} and the cached status list: "
        f"[green]valid[/green] — signed by {result.issuer_name} at "
        f"{result.signed_at:%Y-%m-%d %H:%M} UTC under its seal, chain to the deployment's root "
        f"(one root for 湖南 and 湖北 alike), status list says {status}"
    )


def _status(status: pb.LicenceStatus.ValueType) -> str:
    return pb.LicenceStatus.Name(status).removeprefix("LICENCE_STATUS_").lower()
