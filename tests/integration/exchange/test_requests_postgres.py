"""Share requests on a node backed by PostgreSQL with two worker processes.

Calls go over separate connections, so they spread over both workers: the
request filed through one is decided through the other, and an approval in
one worker supersedes the grant another worker created (its grant index
refreshes before looking for the grant to supersede).
"""

from __future__ import annotations

import pytest

from tests.fixtures.node import NodeFactory, NodeHandle
from tests.fixtures.postgres import reset_pg_schema
from tests.integration.exchange.requests_support import (
    NATIONAL_NODE,
    REQUESTER,
    application,
    exchange_stub,
    load_catalogue,
)
from zhida.exchange.v1 import exchange_service_pb2 as pb

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pg_node(node_factory: NodeFactory, pg_database_url: str) -> NodeHandle:
    reset_pg_schema(pg_database_url)
    return node_factory.start(
        {"ZHIDA_DATABASE__URL": pg_database_url, **NATIONAL_NODE},
        args=("--workers", "2"),
        name="exchange-pg",
    )


def test_requests_and_grants_across_two_workers_on_postgresql(pg_node: NodeHandle) -> None:
    people = load_catalogue(pg_node)
    stubs = [exchange_stub(pg_node, fresh=True) for _ in range(4)]
    clerk, police = people.dept("ja-samr"), people.admin_of("wh-police")
    grants = []
    for n in range(4):  # file through one connection, decide through the next
        filed = stubs[n].ApplyForData(application(items=("姓名",)), metadata=clerk).request
        for stub in stubs:
            pending = stub.ListPendingShareRequests(
                pb.ListPendingShareRequestsRequest(), metadata=police
            )
            assert [r.id for r in pending.requests] == [filed.id]
        approve = pb.ApproveShareRequestRequest(request_id=filed.id, rate_limit_per_minute=60)
        decided = stubs[(n + 1) % 4].ApproveShareRequest(approve, metadata=police)
        assert decided.request.state == pb.SHARE_REQUEST_STATE_APPROVED
        grants.append(decided.grant.id)
    for stub in stubs:
        every = stub.ListGrants(pb.ListGrantsRequest(include_inactive=True), metadata=clerk)
        assert [g.id for g in every.held] == grants
        states = [g.state for g in every.held]
        assert states == [pb.GRANT_STATE_REVOKED] * 3 + [pb.GRANT_STATE_ACTIVE]
        assert all(g.requester_org == REQUESTER.uscc for g in every.held)
    revoked = stubs[0].RevokeGrant(
        pb.RevokeGrantRequest(grant_id=grants[-1], reason="办理完毕"), metadata=police
    )
    assert revoked.grant.state == pb.GRANT_STATE_REVOKED
    for stub in stubs:
        assert stub.ListGrants(pb.ListGrantsRequest(), metadata=clerk).held == []
