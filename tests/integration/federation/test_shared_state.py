"""Forwarding state shared by a node's workers and kept across its restarts (issue 8).

**Restart.** The serving node restarts between two attempts of one request:
it still runs once.
The test plays the city (:class:`NodeCaller`) and sends ``Forward`` straight
to the province. The province is killed (SIGKILL: nothing is flushed on the
way out) and started again on the same data directory and federation port.
Its replay cache and idempotency store are tables of its database
(:mod:`exchange.federation.sql_replay`, :mod:`exchange.federation.sql_idempotency`),
so after the restart the first attempt's assertion is still refused as a
replay, and the retry — a new assertion with the same idempotency key — is
answered from the store: one share request in all.

This module restarts the chain's province; it leaves ``chain.nodes`` pointing
at the new process, which serves exactly like the old one.

**Workers.** A province run with ``--workers 2`` on its own federation port
(allowed now that the state is shared): the city's assertion is accepted once,
then the same envelope over a dozen fresh connections — spread by
``SO_REUSEPORT`` over both workers — is refused as a replay every time.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.fixtures.node import NodeHandle
from tests.integration.catalog_registry.support import failure
from tests.integration.federation.support import (
    CITY,
    PROVINCE,
    Chain,
    NodeCaller,
    apply_request,
    events,
    wait_for,
)
from tests.unit.exchange.federation.support import FederationPki
from zhida.exchange.v1 import exchange_service_pb2 as xpb
from zhida.federation.v1 import federation_service_pb2 as fpb
from zhida.federation.v1 import federation_service_pb2_grpc as fpb_grpc
from zhida.localnode import free_port

pytestmark = pytest.mark.integration

Code = grpc.StatusCode


@pytest.fixture
def city(deployment: FederationPki) -> Iterator[NodeCaller]:
    caller = NodeCaller(deployment, CITY)
    yield caller
    caller.close()


def _restart_province(chain: Chain) -> None:
    """SIGKILL the province; start it again on its data directory (same database, keys)."""
    old = chain.province
    old.stop(signal.SIGKILL)
    env = {**chain.env[PROVINCE], "ZHIDA_NODE__DATA_DIR": str(old.data_dir)}
    chain.nodes[PROVINCE] = chain.factory.start(env=env, name=f"fed-{PROVINCE}-restarted")
    assert chain.province.config.database.url == old.config.database.url


def test_a_retry_after_the_serving_node_restarted_is_answered_from_its_store(
    chain: Chain, city: NodeCaller
) -> None:
    purpose = "服务节点重启后重试"
    request = apply_request(purpose).SerializeToString(deterministic=True)
    key = "serving-restart-1"
    first = city.envelope(city.assertion(city.claims(request, key=key), PROVINCE), request, key=key)
    reply = city.stub(chain.fed[PROVINCE]).Forward(first, timeout=20)
    assert (list(reply.path), reply.replayed) == ([CITY, PROVINCE], False)
    granted = xpb.ApplyForDataResponse.FromString(reply.response)

    _restart_province(chain)

    def forward(envelope: fpb.ForwardRequest) -> fpb.ForwardResponse | None:
        try:  # a fresh channel: the old one may still be reconnecting to the dead process
            answer: fpb.ForwardResponse = city.stub(chain.fed[PROVINCE]).Forward(
                envelope, timeout=20
            )
        except grpc.RpcError as error:
            if error.code() is not Code.UNAVAILABLE:
                raise
            return None
        return answer

    # the same assertion again: its jti is still in the replay table
    wait_for(lambda: _reachable(chain, city), timeout=20, what="the restarted province's port")
    details = failure(city.stub(chain.fed[PROVINCE]).Forward, first, timeout=20)
    assert (details.code, details.reason) == (Code.UNAUTHENTICATED, "ASSERTION_INVALID")
    refused = wait_for(
        lambda: [e for e in events(chain.province) if e.details.get("failure") == "REPLAYED"],
        what="the restarted province's record of the replay",
    )
    assert refused[-1].details["peer"] == CITY

    # a retry: new assertion (new jti), same key and request → the stored answer
    retry = city.envelope(city.assertion(city.claims(request, key=key), PROVINCE), request, key=key)
    again = wait_for(lambda: forward(retry), timeout=20, what="the retry")
    assert again.replayed
    assert again.response == reply.response
    assert xpb.ApplyForDataResponse.FromString(again.response).request.id == granted.request.id
    assert [r.id for r in chain.requests_at(chain.province, purpose)] == [granted.request.id]


def _reachable(chain: Chain, city: NodeCaller) -> bool:
    """The province's federation port completes a mutual-TLS handshake with the city."""
    creds = city.credentials.channel_credentials()
    with grpc.secure_channel(chain.fed[PROVINCE], creds) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=5)
        except grpc.FutureTimeoutError:
            return False
    return True


@pytest.fixture
def two_workers(chain: Chain) -> Iterator[tuple[NodeHandle, str]]:
    """A second province process group: ``--workers 2``, its own data and federation port."""
    fed = f"127.0.0.1:{free_port()}"
    env = {**chain.env[PROVINCE], "ZHIDA_FEDERATION__LISTEN": fed}
    node = chain.factory.start(env=env, args=["--workers", "2"], name="fed-workers")
    assert len(node.started["workers"]) == 2
    yield node, fed
    node.stop()


def test_workers_share_the_replay_cache(
    two_workers: tuple[NodeHandle, str], city: NodeCaller
) -> None:
    node, fed = two_workers
    request = apply_request("两个工作进程").SerializeToString(deterministic=True)
    custody = city.assertion(city.claims(request, key="workers-1"), PROVINCE)
    envelope = city.envelope(custody, request, key="workers-1")
    creds = city.credentials.channel_credentials()
    fresh = [("grpc.use_local_subchannel_pool", 1)]  # one connection per channel

    def forward(channel: grpc.Channel) -> Any:
        return fpb_grpc.FederationServiceStub(channel).Forward(envelope, timeout=20)

    def first_code() -> Code:
        with grpc.secure_channel(fed, creds, options=fresh) as channel:
            try:
                forward(channel)
            except grpc.RpcError as error:
                code: Code = error.code()
                return code
        return Code.OK

    # accepted: served, or refused after the custody check (this node has no catalogue)
    assert first_code() is not Code.UNAUTHENTICATED
    replays = 16
    for _ in range(replays):
        with grpc.secure_channel(fed, creds, options=fresh) as channel:
            details = failure(forward, channel)
        assert (details.code, details.reason) == (Code.UNAUTHENTICATED, "ASSERTION_INVALID")

    def forwards(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            r
            for r in records
            if r["logger"] == "zhida.access" and str(r.get("method", "")).endswith("/Forward")
        ]

    records = node.wait_for_records(lambda records: len(forwards(records)) > replays, timeout=15)
    served_by = {r["pid"] for r in forwards(records)}
    assert served_by == set(node.started["workers"]), "both workers should have served"
