"""LicenceVaultService on a real ``zhida serve`` process: the whole story and every refusal.

Everything runs twice: on the embedded default (SQLite, blob files) and on
PostgreSQL with SeaweedFS S3 (licence PDFs in the bucket).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from licence_vault.status_list import verify_status_list_token
from licence_vault.types import BUSINESS_LICENCE, DRUG_BUSINESS_PERMIT, FOOD_BUSINESS_PERMIT
from signing.trust import ChainVerifier, TrustBundle
from tests.fixtures.node import NodeFactory, NodeHandle
from tests.fixtures.postgres import reset_pg_schema
from tests.unit.licence_vault.support import (
    JIANGAN_SAMR,
    OTHER_APP,
    PORTAL,
    RESTAURANT,
    RESTAURANT_NAME,
    UNSEALED_ISSUER,
    WUHAN_SAMR,
    food_permit_draft,
    tamper_stored_jws,
)
from zhida.audit.v1 import audit_service_pb2 as audit_pb
from zhida.audit.v1 import audit_service_pb2_grpc as audit_rpc
from zhida.auth.principal import Role
from zhida.client import ErrorDetails, error_details
from zhida.db import Database
from zhida.licence.v1 import licence_vault_service_pb2 as pb
from zhida.licence.v1 import licence_vault_service_pb2_grpc as rpc

pytestmark = pytest.mark.integration

MATTER = "YJS-KBCYD"
TYPES = [BUSINESS_LICENCE.code, FOOD_BUSINESS_PERMIT.code]


def _bl_draft(request_id: str, **data: str) -> pb.LicenceDraft:
    fields = {
        "统一社会信用代码": RESTAURANT, "名称": RESTAURANT_NAME, "类型": "有限责任公司",
        "法定代表人": "张三", "成立日期": "2024-03-01", "住所": "武汉市江岸区沿江大道100号",
        "经营范围": "餐饮服务", "登记机关": "武汉市江岸区市场监督管理局",
    }  # fmt: skip
    fields.update(data)
    return pb.LicenceDraft(
        request_id=request_id, type_code=BUSINESS_LICENCE.code, holder_code=RESTAURANT,
        holder_name=RESTAURANT_NAME, data=fields,
    )  # fmt: skip


def _fails(call: Callable[..., Any], *args: Any, **kwargs: Any) -> ErrorDetails:
    try:
        call(*args, **kwargs)
    except grpc.RpcError as err:
        return error_details(err)
    raise AssertionError("the call succeeded")


class Parties:
    def __init__(self, node: NodeHandle) -> None:
        self.stub = rpc.LicenceVaultServiceStub(node.channel())
        self.audit = audit_rpc.AuditServiceStub(node.channel())
        self.issuer = node.auth(role=Role.ISSUER, org=JIANGAN_SAMR, region="420102", subject="wang")
        self.other_issuer = node.auth(role=Role.ISSUER, org=WUHAN_SAMR, subject="zhao")
        self.unsealed = node.auth(role=Role.ISSUER, org=UNSEALED_ISSUER, subject="qian")
        self.portal = node.auth(role=Role.APPLICATION, org=PORTAL, subject="portal")
        self.other_app = node.auth(role=Role.APPLICATION, org=OTHER_APP, subject="other")
        self.holder = node.auth(role=Role.HOLDER, org=RESTAURANT, subject=RESTAURANT)
        self.auditor = node.auth(role=Role.AUDITOR, subject="auditor")


@pytest.fixture(scope="module", params=["sqlite-files", "postgresql-s3"])
def node(request: pytest.FixtureRequest, node_factory: NodeFactory) -> NodeHandle:
    """The embedded default, then the production backends: PostgreSQL and SeaweedFS S3."""
    if request.param == "sqlite-files":
        # the node's own expiry job off: this module runs `zhida licence expire` itself
        # (the job: test_expiry_node.py)
        off = {"ZHIDA_LICENCE__EXPIRE_INTERVAL_SECONDS": "0"}
        return node_factory.start(name="vault-embedded", env=off)
    reset_pg_schema(request.getfixturevalue("pg_database_url"))
    handle: NodeHandle = request.getfixturevalue("pg_s3_node")
    return handle


@pytest.fixture(scope="module")
def parties(node: NodeHandle) -> Parties:
    return Parties(node)


def _consent(p: Parties, types: list[str] = TYPES, days: int = 7) -> str:
    until = Timestamp()
    until.FromDatetime(datetime.now(UTC) + timedelta(days=days))
    reply = p.stub.GrantConsent(
        pb.GrantConsentRequest(
            organisation=PORTAL, type_codes=types, matter_code=MATTER, valid_until=until
        ),
        metadata=p.holder,
    )
    return reply.consent.consent_id


def test_issue_fetch_verify_revoke_and_the_holders_view(node: NodeHandle, parties: Parties) -> None:
    p = parties
    types = p.stub.ListLicenceTypes(pb.ListLicenceTypesRequest(), metadata=p.portal)
    assert len(types.types) == 9
    assert any(m.code == MATTER for m in types.matters)

    bl = p.stub.IssueLicence(pb.IssueLicenceRequest(draft=_bl_draft("it-bl")), metadata=p.issuer)
    assert bl.created
    assert bl.licence.status == pb.LICENCE_STATUS_VALID
    retry = p.stub.IssueLicence(pb.IssueLicenceRequest(draft=_bl_draft("it-bl")), metadata=p.issuer)
    assert not retry.created
    assert retry.licence.licence_id == bl.licence.licence_id
    fp = p.stub.IssueLicence(
        pb.IssueLicenceRequest(draft=food_permit_draft("it-fp")), metadata=p.issuer
    )

    consent_id = _consent(p)
    fetched = p.stub.FetchLicences(
        pb.FetchLicencesRequest(
            holder_code=RESTAURANT, type_codes=TYPES, matter_code=MATTER, consent_id=consent_id,
            annotated_pdf=True,
        ),
        metadata=p.portal,
    )  # fmt: skip
    assert fetched.basis == pb.FETCH_BASIS_CONSENT
    assert {f.licence.licence_id for f in fetched.licences} == {
        bl.licence.licence_id, fp.licence.licence_id,
    }  # fmt: skip
    assert fp.licence.pdf_sha256  # the sealed original PDF is stored too
    copies = {}
    for item in fetched.licences:
        assert item.status == pb.LICENCE_STATUS_VALID
        assert item.jws
        assert item.annotation.watermark.startswith("仅供开办餐饮店使用")
        verdict = p.stub.VerifyLicence(pb.VerifyLicenceRequest(jws=item.jws), metadata=p.portal)
        assert verdict.valid
        assert verdict.issuer_code == JIANGAN_SAMR
        assert item.annotated_pdf.startswith(b"%PDF")
        copies[item.licence.licence_id] = item.annotated_pdf
        verdict = p.stub.VerifyLicence(
            pb.VerifyLicenceRequest(pdf=item.annotated_pdf), metadata=p.portal
        )
        assert verdict.valid, verdict.message
        assert verdict.licence_id == item.licence.licence_id

    # offline: the status list verifies against the trust bundle the node hands out
    trust = p.stub.GetTrustMaterial(pb.GetTrustMaterialRequest(), metadata=p.portal)
    chains = ChainVerifier(TrustBundle.from_json(trust.trust_bundle_json))
    status = p.stub.GetStatusList(
        pb.GetStatusListRequest(uri=fp.licence.status_list_uri), metadata=p.portal
    )
    lst = verify_status_list_token(status.token, chains, uri=status.uri, issuer_code=JIANGAN_SAMR)
    assert lst.status(fp.licence.status_list_index) == 0

    # revoke: only the issuing department; then the fetch returns it with its status only
    denied = _fails(
        p.stub.RevokeLicence,
        pb.RevokeLicenceRequest(licence_id=fp.licence.licence_id, reason="x"),
        metadata=p.other_issuer,
    )
    assert (denied.code, denied.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_ISSUER")
    revoked = p.stub.RevokeLicence(
        pb.RevokeLicenceRequest(licence_id=fp.licence.licence_id, reason="依法吊销"),
        metadata=p.issuer,
    )
    assert revoked.licence.status == pb.LICENCE_STATUS_REVOKED
    again = p.stub.FetchLicences(
        pb.FetchLicencesRequest(
            holder_code=RESTAURANT, type_codes=TYPES, matter_code=MATTER, consent_id=consent_id
        ),
        metadata=p.portal,
    )
    by_id = {f.licence.licence_id: f for f in again.licences}
    assert by_id[fp.licence.licence_id].status == pb.LICENCE_STATUS_REVOKED
    assert by_id[fp.licence.licence_id].jws == ""
    verdict = p.stub.VerifyLicence(
        pb.VerifyLicenceRequest(licence_id=fp.licence.licence_id), metadata=p.portal
    )
    assert not verdict.valid
    assert verdict.reason == "REVOKED"
    verdict = p.stub.VerifyLicence(
        pb.VerifyLicenceRequest(pdf=copies[fp.licence.licence_id]), metadata=p.portal
    )
    assert verdict.reason == "REVOKED"
    status = p.stub.GetStatusList(
        pb.GetStatusListRequest(issuer_code=JIANGAN_SAMR), metadata=p.portal
    )
    lst = verify_status_list_token(status.token, chains, uri=status.uri)
    assert lst.status(fp.licence.status_list_index) == 1

    # amend: a new version; the old one is superseded but still verifies as such
    amended = p.stub.AmendLicence(
        pb.AmendLicenceRequest(
            licence_id=bl.licence.licence_id,
            changes={"法定代表人": "李四"},
            reason="法定代表人变更",
        ),
        metadata=p.issuer,
    )
    assert amended.licence.version == 2
    history = p.stub.GetLicenceHistory(
        pb.GetLicenceHistoryRequest(licence_id=amended.licence.licence_id), metadata=p.holder
    )
    assert [v.version for v in history.versions] == [1, 2]
    assert [e.action for e in history.events] == ["issue", "amend", "issue"]
    old = p.stub.VerifyLicence(
        pb.VerifyLicenceRequest(licence_id=bl.licence.licence_id), metadata=p.portal
    )
    assert old.reason == "SUPERSEDED"

    # the holder's view: its licences and every use, newest first
    mine = p.stub.ListMyLicences(pb.ListMyLicencesRequest(), metadata=p.holder)
    assert {lic.licence_id for lic in mine.licences} == {
        amended.licence.licence_id, fp.licence.licence_id,
    }  # fmt: skip
    uses = p.stub.ListLicenceUses(pb.ListLicenceUsesRequest(page_size=3), metadata=p.holder)
    assert len(uses.uses) == 3
    assert uses.next_page_token
    assert all(u.requester_organisation == PORTAL for u in uses.uses)
    rest = p.stub.ListLicenceUses(
        pb.ListLicenceUsesRequest(page_token=uses.next_page_token), metadata=p.holder
    )
    assert len(rest.uses) == 1

    # every fetch is in the audit log, found by the holder's id
    events = p.audit.SearchEvents(
        audit_pb.SearchEventsRequest(holder_id=RESTAURANT, actions=["licence.fetch"]),
        metadata=p.auditor,
    )
    assert len(events.events) == 4
    assert {e.matter for e in events.events} == {MATTER}
    # each licence handed out has its use record and its audit event (committed together)
    assert {e.details["annotation_id"] for e in events.events} == {
        u.annotation_id for u in [*uses.uses, *rest.uses]
    }
    issued = p.audit.SearchEvents(
        audit_pb.SearchEventsRequest(licence_id=fp.licence.licence_id), metadata=p.auditor
    )
    assert [e.action for e in issued.events] == [
        "licence.issue", "licence.fetch", "licence.verify", "licence.verify", "licence.revoke",
        "licence.fetch", "licence.verify", "licence.verify",
    ]  # fmt: skip


def test_bad_input_is_refused_with_reasons(parties: Parties) -> None:
    p = parties
    cases = [
        (_bl_draft("bad-1"), "UNKNOWN_LICENCE_TYPE", "type_code"),
        (_bl_draft("bad-2", 名称=""), "INVALID_LICENCE_DATA", "data.名称"),
        (_bl_draft("bad-3", 成立日期="2024-13-01"), "INVALID_LICENCE_DATA", "data.成立日期"),
        (_bl_draft("bad-4"), "INVALID_HOLDER_ID", "holder_code"),
    ]
    cases[0][0].type_code = "111000000000170137999"
    cases[3][0].holder_code = "91420102MA4KXY128A"
    for draft, reason, field in cases:
        err = _fails(p.stub.IssueLicence, pb.IssueLicenceRequest(draft=draft), metadata=p.issuer)
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.reason == reason
        assert f"draft.{field}" in {v.field for v in err.violations}
    err = _fails(
        p.stub.IssueLicence, pb.IssueLicenceRequest(draft=_bl_draft("s")), metadata=p.unsealed
    )
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ISSUER_NO_VALID_SEAL")
    err = _fails(
        p.stub.IssueLicence, pb.IssueLicenceRequest(draft=_bl_draft("s")), metadata=p.portal
    )
    assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")


def test_fetch_refusals_are_permission_denied_with_the_reason(
    parties: Parties,
) -> None:
    p = parties
    p.stub.IssueLicence(pb.IssueLicenceRequest(draft=_bl_draft("f-bl")), metadata=p.issuer)
    consent_id = _consent(p, [BUSINESS_LICENCE.code])

    def fetch(md: Any, types: list[str], consent: str) -> ErrorDetails:
        return _fails(
            p.stub.FetchLicences,
            pb.FetchLicencesRequest(
                holder_code=RESTAURANT, type_codes=types, matter_code=MATTER, consent_id=consent
            ),
            metadata=md,
        )

    assert fetch(p.portal, TYPES, "").reason == "CONSENT_REQUIRED"
    assert fetch(p.portal, TYPES, "f" * 32).reason == "CONSENT_NOT_FOUND"
    assert fetch(p.portal, TYPES, consent_id).reason == "CONSENT_WRONG_TYPE"
    assert fetch(p.other_app, [BUSINESS_LICENCE.code], consent_id).reason == (
        "CONSENT_WRONG_ORGANISATION"
    )
    assert fetch(p.portal, [DRUG_BUSINESS_PERMIT.code], consent_id).reason == (
        "TYPE_NOT_FOR_MATTER"
    )
    p.stub.WithdrawConsent(
        pb.WithdrawConsentRequest(consent_id=consent_id, reason="不办了"), metadata=p.holder
    )
    err = fetch(p.portal, [BUSINESS_LICENCE.code], consent_id)
    assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CONSENT_WITHDRAWN")
    denied = p.audit.SearchEvents(
        audit_pb.SearchEventsRequest(
            holder_id=RESTAURANT, actions=["licence.fetch"], outcome=audit_pb.OUTCOME_DENIED
        ),
        metadata=p.auditor,
    )
    assert "CONSENT_WITHDRAWN" in {e.reason for e in denied.events}
    # a legal-basis matter needs no consent, and says so
    legal = p.stub.FetchLicences(
        pb.FetchLicencesRequest(
            holder_code=RESTAURANT, type_codes=[BUSINESS_LICENCE.code], matter_code="YJS-QYPCHC"
        ),
        metadata=p.other_app,
    )
    assert legal.basis == pb.FETCH_BASIS_LEGAL_BASIS
    assert "企业破产法" in legal.legal_basis


def test_a_lapsed_licence_reads_expired_and_the_expiry_job_stores_it(
    node: NodeHandle, parties: Parties
) -> None:
    p = parties
    draft = food_permit_draft("lapsed")  # a historical import whose validity ended long ago
    draft.issue_date, draft.valid_until = "2019-01-01", "2020-12-31"
    issued = p.stub.IssueLicence(pb.IssueLicenceRequest(draft=draft), metadata=p.issuer)
    licence_id = issued.licence.licence_id
    assert issued.licence.status == pb.LICENCE_STATUS_EXPIRED

    def history() -> pb.GetLicenceHistoryResponse:
        request = pb.GetLicenceHistoryRequest(licence_id=licence_id)
        reply: pb.GetLicenceHistoryResponse = p.stub.GetLicenceHistory(request, metadata=p.holder)
        return reply

    # before the job has run: the status is derived from the dates
    got = p.stub.GetLicence(pb.GetLicenceRequest(licence_id=licence_id), metadata=p.issuer)
    assert got.licence.status == pb.LICENCE_STATUS_EXPIRED
    assert got.jws
    assert history().versions[-1].status == pb.LICENCE_STATUS_EXPIRED
    refusals = [
        _fails(
            p.stub.AmendLicence,
            pb.AmendLicenceRequest(licence_id=licence_id, changes={"经营项目": "x"}, reason="变更"),
            metadata=p.issuer,
        ),
        _fails(
            p.stub.SuspendLicence,
            pb.SuspendLicenceRequest(licence_id=licence_id, reason="整顿"),
            metadata=p.issuer,
        ),
    ]
    for err in refusals:
        assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "LICENCE_EXPIRED")

    # the job (cron) on the node's database and signing deployment; again: nothing to do
    runs = [node.cli("licence", "expire", "--batch-size", "50") for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stdout + run.stderr
    # a node whose own job is on (pg-s3: soon after start, then hourly) may have stored it
    by_node = node.config.licence.expire_interval_seconds > 0 and "expired 0," in runs[0].stdout
    assert "expired 1," in runs[0].stdout or by_node
    assert "expired 0," in runs[1].stdout
    after = history()
    assert [e.action for e in after.events] == ["issue", "expire"]
    assert after.events[1].record  # the issuer's signed record of the expiry
    assert after.versions[-1].status == pb.LICENCE_STATUS_EXPIRED
    verdict = p.stub.VerifyLicence(pb.VerifyLicenceRequest(jws=got.jws), metadata=p.portal)
    assert (verdict.valid, verdict.reason) == (False, "EXPIRED")
    # whoever stored it (the command or the node's job) recorded it in the audit log, once
    expired = p.audit.SearchEvents(
        audit_pb.SearchEventsRequest(actions=["licence.expire"], licence_id=licence_id),
        metadata=p.auditor,
    )
    assert len(expired.events) == 1


def test_a_tampered_document_is_never_served(node: NodeHandle, parties: Parties) -> None:
    p = parties
    issued = p.stub.IssueLicence(
        pb.IssueLicenceRequest(draft=food_permit_draft("tamper")), metadata=p.issuer
    )
    licence_id = issued.licence.licence_id
    database = Database(node.config.database.url, pooled=False)
    try:
        tamper_stored_jws(database, licence_id)  # the JWS is stored with the licence
    finally:
        database.dispose()
    consent_id = _consent(p, [FOOD_BUSINESS_PERMIT.code])
    fetch = pb.FetchLicencesRequest(
        holder_code=RESTAURANT, type_codes=[FOOD_BUSINESS_PERMIT.code], matter_code=MATTER,
        consent_id=consent_id,
    )  # fmt: skip
    errors = [
        _fails(p.stub.GetLicence, pb.GetLicenceRequest(licence_id=licence_id), metadata=p.issuer),
        _fails(
            p.stub.VerifyLicence, pb.VerifyLicenceRequest(licence_id=licence_id), metadata=p.portal
        ),
        _fails(p.stub.FetchLicences, fetch, metadata=p.portal),  # in a batch of fetches
        _fails(
            p.stub.FetchLicences,
            pb.FetchLicencesRequest(
                holder_code=RESTAURANT,
                type_codes=[FOOD_BUSINESS_PERMIT.code],
                matter_code=MATTER,
                consent_id=consent_id,
                annotated_pdf=True,
            ),
            metadata=p.portal,
        ),  # on its own, with an annotated copy
    ]
    for err in errors:
        assert (err.code, err.reason) == (grpc.StatusCode.INTERNAL, "BLOB_HASH_MISMATCH")
    uses = p.stub.ListLicenceUses(pb.ListLicenceUsesRequest(page_size=500), metadata=p.holder)
    assert licence_id not in {u.licence_id for u in uses.uses}  # nothing was handed out
    refused = p.audit.SearchEvents(
        audit_pb.SearchEventsRequest(actions=["licence.fetch"], outcome=audit_pb.OUTCOME_ERROR),
        metadata=p.auditor,
    )
    # one error event per refused call (reads and fetches alike are recorded as licence.fetch)
    assert [e.reason for e in refused.events] == ["BLOB_HASH_MISMATCH"] * len(errors)
    reported = p.audit.SearchEvents(
        audit_pb.SearchEventsRequest(
            licence_id=issued.licence.licence_id, outcome=audit_pb.OUTCOME_ERROR
        ),
        metadata=p.auditor,
    )
    # every refusal names the licence, fetches included
    assert [e.reason for e in reported.events] == ["BLOB_HASH_MISMATCH"] * len(errors)
