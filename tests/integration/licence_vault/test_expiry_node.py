"""The periodic expiry job in a real ``zhida serve`` process (``licence.expire_interval_seconds``
= 1): a licence issued already past its end date is stored expired and audited."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from licence_vault.days import licence_today
from tests.fixtures.node import NodeFactory
from tests.unit.licence_vault.support import JIANGAN_SAMR, RESTAURANT, food_permit_draft
from zhida.audit.v1 import audit_service_pb2 as audit_pb
from zhida.audit.v1 import audit_service_pb2_grpc as audit_rpc
from zhida.auth.principal import Role
from zhida.licence.v1 import licence_vault_service_pb2 as pb
from zhida.licence.v1 import licence_vault_service_pb2_grpc as rpc

pytestmark = pytest.mark.integration

BOUND = 60.0  # seconds: only keeps a node whose job never runs from hanging the test


def _lapsed_permit(request_id: str) -> pb.LicenceDraft:
    """A food permit issued 90 days ago whose validity ended yesterday."""
    today = licence_today()
    return food_permit_draft(
        request_id,
        issue_date=(today - timedelta(days=90)).isoformat(),
        valid_until=(today - timedelta(days=1)).isoformat(),
    )


def test_the_node_expires_lapsed_licences_and_audits_them(node_factory: NodeFactory) -> None:
    node = node_factory.start(
        env={"ZHIDA_LICENCE__EXPIRE_INTERVAL_SECONDS": "1"}, name="vault-expiry"
    )
    vault = rpc.LicenceVaultServiceStub(node.channel())
    audit = audit_rpc.AuditServiceStub(node.channel())
    issuer = node.auth(role=Role.ISSUER, org=JIANGAN_SAMR, region="420102", subject="wang")
    auditor = node.auth(role=Role.AUDITOR, subject="auditor")
    issued = vault.IssueLicence(
        pb.IssueLicenceRequest(draft=_lapsed_permit("fp-lapsed")), metadata=issuer
    )
    licence_id = issued.licence.licence_id
    wanted = audit_pb.SearchEventsRequest(holder_id=RESTAURANT, actions=["licence.expire"])

    deadline = time.monotonic() + BOUND
    while not (found := audit.SearchEvents(wanted, metadata=auditor).events):
        assert time.monotonic() < deadline, "no licence.expire event: did the job run?"
        time.sleep(0.1)
    (event,) = found
    assert event.licence_id == licence_id
    assert event.organisation == JIANGAN_SAMR
    assert event.details["valid_until"] == _lapsed_permit("x").valid_until
    history = vault.GetLicenceHistory(
        pb.GetLicenceHistoryRequest(licence_id=licence_id), metadata=issuer
    )
    assert [e.action for e in history.events] == ["issue", "expire"]
    assert "licence expiry job started" in node.log_path.read_text(encoding="utf-8")
