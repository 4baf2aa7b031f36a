"""Demo chapter: the licence vault — issue, consent, fetch for 开办餐饮店, verify, revoke, history.

江岸区市场监督管理局 issues a restaurant its business licence and its food
business permit under its 电子证照专用章; the restaurant consents that the
one-stop portal use both for the matter 开办餐饮店; the portal fetches them
(annotated copies with the "仅供开办餐饮店使用" watermark), a relying party
verifies them offline with cached trust material and status list; the permit
is revoked and verification now fails; the restaurant reads who used its
licences.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from rich.table import Table

from licence_vault.days import licence_day
from licence_vault.offline import CachedNode, offline_verifier
from licence_vault.types import BUSINESS_LICENCE, FOOD_BUSINESS_PERMIT
from zhida.auth.mint import DEMO_ORGS
from zhida.auth.principal import Role
from zhida.client import bearer, error_details
from zhida.demo import DemoContext, DemoError, demo_node
from zhida.licence.v1 import licence_vault_service_pb2 as pb
from zhida.licence.v1 import licence_vault_service_pb2_grpc as pb_grpc

ISSUER = DEMO_ORGS["武汉市江岸区市场监督管理局"]
PORTAL = DEMO_ORGS["武汉市武昌区政务服务和大数据管理局"]
OTHER = DEMO_ORGS["湖北省公安厅"]
RESTAURANT = "91420102MA4KXY128F"  # synthetic, valid check character
NAME = "武汉市江岸区知味餐饮有限公司"
MATTER = "YJS-KBCYD"  # 开办餐饮店
TYPES = [BUSINESS_LICENCE.code, FOOD_BUSINESS_PERMIT.code]


def _drafts() -> list[pb.LicenceDraft]:
    address = "武汉市江岸区沿江大道100号"
    business = pb.LicenceDraft(
        request_id="demo-yyzz-1", type_code=BUSINESS_LICENCE.code, holder_code=RESTAURANT,
        holder_name=NAME, matter_code="YJS-KBCYD", matter_name="开办餐饮店",
        data={
            "统一社会信用代码": RESTAURANT, "名称": NAME, "类型": "有限责任公司",
            "法定代表人": "张三", "注册资本": "50万元人民币", "成立日期": "2025-03-01",
            "住所": address, "经营范围": "餐饮服务；食品销售",
            "登记机关": "武汉市江岸区市场监督管理局",
        },
    )  # fmt: skip
    food = pb.LicenceDraft(
        request_id="demo-spjy-1", type_code=FOOD_BUSINESS_PERMIT.code, holder_code=RESTAURANT,
        holder_name=NAME, matter_code="YJS-KBCYD", matter_name="开办餐饮店",
        data={
            "经营者名称": NAME, "社会信用代码": RESTAURANT, "法定代表人（负责人）": "张三",
            "住所": address, "经营场所": address + "1层", "主体业态": "餐饮服务经营者",
            "经营项目": "热食类食品制售；冷食类食品制售", "许可证编号": "JY24201020012345",
            "日常监督管理机构": "武汉市江岸区市场监督管理局", "投诉举报电话": "12315",
        },
    )  # fmt: skip
    return [business, food]


def chapter(ctx: DemoContext) -> None:
    out = ctx.console
    node = demo_node(ctx)
    issuer = bearer(node.mint(Role.ISSUER, organisation=ISSUER, subject="clerk-wang"))
    holder = bearer(node.mint(Role.HOLDER, organisation=RESTAURANT, subject=RESTAURANT))
    portal = bearer(node.mint(Role.APPLICATION, organisation=PORTAL, subject="yiwangtongban"))
    other = bearer(node.mint(Role.APPLICATION, organisation=OTHER, subject="someone-else"))
    files = ctx.data_dir / "vault-demo"
    files.mkdir(parents=True, exist_ok=True)

    with grpc.insecure_channel(node.address) as channel:
        stub = pb_grpc.LicenceVaultServiceStub(channel)

        # 1. issue, sealed
        issued = []
        for draft in _drafts():
            reply = stub.IssueLicence(pb.IssueLicenceRequest(draft=draft), metadata=issuer)
            lic = reply.licence
            meta = json.loads(lic.metadata_json)
            out.print(
                f"issued [bold]{lic.type_name}[/bold] {lic.licence_id}\n"
                f"  to {lic.holder_name} by {lic.issuer_name}; JWS {len(reply.jws)} chars, "
                f"sealed PDF {'stored' if lic.pdf_sha256 else 'not rendered'}; "
                f"status list {lic.status_list_uri} #{lic.status_list_index}; "
                f"valid {lic.valid_from} – {lic.valid_until or meta['有效期截止日期']}"
            )
            issued.append(lic)
        again = stub.IssueLicence(pb.IssueLicenceRequest(draft=_drafts()[0]), metadata=issuer)
        if again.created or again.licence.licence_id != issued[0].licence_id:
            raise DemoError("a retried issue made a second licence")
        out.print("retried the first issue with the same request id: same licence, none added")
        business, food = issued

        # 2. consent, 3. fetch
        until = Timestamp()
        until.FromDatetime(datetime.now(UTC) + timedelta(days=7))
        consent = stub.GrantConsent(
            pb.GrantConsentRequest(
                organisation=PORTAL, type_codes=TYPES, matter_code=MATTER, valid_until=until
            ),
            metadata=holder,
        ).consent
        out.print(
            f"{NAME} consents: the portal ({PORTAL}) may use both licences for 开办餐饮店 "
            f"for 7 days (consent {consent.consent_id})"
        )
        fetch = pb.FetchLicencesRequest(
            holder_code=RESTAURANT, type_codes=TYPES, matter_code=MATTER,
            consent_id=consent.consent_id, annotated_pdf=True,
        )  # fmt: skip
        try:
            stub.FetchLicences(fetch, metadata=other)
        except grpc.RpcError as err:
            details = error_details(err)
            out.print(f"another organisation tries the same consent: [yellow]{details}[/yellow]")
            if details.reason != "CONSENT_WRONG_ORGANISATION":
                raise DemoError(f"unexpected refusal {details}") from None
        else:
            raise DemoError("a fetch under someone else's consent succeeded")
        fetched = stub.FetchLicences(fetch, metadata=portal)
        table = Table(title="the portal's fetch for 开办餐饮店 (annotated copies, 加注件)")
        for col in ("licence", "status", "watermark", "use until", "copy"):
            table.add_column(col)
        tokens: dict[str, str] = {}
        copies: dict[str, bytes] = {}
        for item in fetched.licences:
            tokens[item.licence.licence_id] = item.jws
            copies[item.licence.licence_id] = item.annotated_pdf
            copy = ""
            if item.annotated_pdf:
                path = files / f"{item.licence.type_name}-加注件.pdf"
                path.write_bytes(item.annotated_pdf)
                copy = f"{path.name} ({len(item.annotated_pdf) // 1024} KiB)"
            table.add_row(
                item.licence.type_name,
                pb.LicenceStatus.Name(item.status).removeprefix("LICENCE_STATUS_").lower(),
                item.annotation.watermark,
                licence_day(item.annotation.use_until.ToDatetime(tzinfo=UTC)).isoformat(),
                copy,
            )
        out.print(table)
        if len(tokens) != 2 or not all(tokens.values()):
            raise DemoError("the fetch did not return both valid licences")

        # 4. verify offline: local signature, seal and chain checks, cached status list
        cache = CachedNode(files / "verifier-cache", stub, portal)
        verifier = offline_verifier(cache)
        for lic in issued:
            result = verifier.verify(tokens[lic.licence_id])
            if not result.valid:
                raise DemoError(f"{lic.type_name} did not verify: {result.reason}")
            out.print(
                f"verified offline: {lic.type_name} [green]valid[/green] — signed by "
                f"{result.issuer_name} at {result.signed_at:%Y-%m-%d %H:%M} UTC under its seal, "
                "chain to the trusted root, status list says valid"
            )

        # 5. revoke the permit: verification now fails
        stub.RevokeLicence(
            pb.RevokeLicenceRequest(licence_id=food.licence_id, reason="依法吊销（演示）"),
            metadata=issuer,
        )
        out.print(f"江岸区市场监督管理局 revokes the {food.type_name} (依法吊销)")
        result = offline_verifier(cache, refresh=True).verify(tokens[food.licence_id])
        out.print(
            f"verified offline with the refreshed status list: {food.type_name} "
            f"[red]{'valid' if result.valid else 'invalid'}[/red]: {result.reason}"
        )
        if result.valid or result.reason != "REVOKED":
            raise DemoError("the revoked permit still verifies")
        still = offline_verifier(cache).verify(tokens[business.licence_id])
        if not still.valid:
            raise DemoError("the business licence stopped verifying")
        if copies[food.licence_id]:
            verdict = stub.VerifyLicence(
                pb.VerifyLicenceRequest(pdf=copies[food.licence_id]), metadata=portal
            )
            out.print(f"the permit's annotated PDF at the vault: {verdict.reason}")
            if verdict.valid:
                raise DemoError("the revoked permit's PDF still verifies")
        refetch = stub.FetchLicences(fetch, metadata=portal)
        for item in refetch.licences:
            if item.licence.licence_id == food.licence_id and item.jws:
                raise DemoError("a revoked licence was served as a document")
        out.print("fetched again: the permit comes back with its revoked status only, no document")

        # 6. the holder's access history
        uses = stub.ListLicenceUses(pb.ListLicenceUsesRequest(), metadata=holder)
        table = Table(title=f"who used {NAME}'s licences (the holder's view)")
        for col in ("when (UTC)", "who", "licence", "matter", "basis", "status then"):
            table.add_column(col)
        names = {lic.licence_id: lic.type_name for lic in issued}
        for use in uses.uses:
            basis = pb.FetchBasis.Name(use.basis).removeprefix("FETCH_BASIS_").lower()
            table.add_row(
                use.made_at.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S"),
                f"{use.requester_organisation} {use.requester_subject}",
                names.get(use.licence_id, use.licence_id),
                use.matter_name,
                f"{basis} {use.consent_id[:8]}…" if use.consent_id else basis,
                pb.LicenceStatus.Name(use.status).removeprefix("LICENCE_STATUS_").lower(),
            )
        out.print(table)
        if len(uses.uses) != 4:
            raise DemoError(f"expected 4 uses in the holder's history, found {len(uses.uses)}")
