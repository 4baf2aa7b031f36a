"""A slow link and a dead node between county and province (issue 8, item 7), with real processes.

* The budget runs out: DEADLINE_EXCEEDED, quickly, and the province never runs
  the call (the late envelope is refused where it arrives).
* The city is killed (SIGKILL): the county answers UNAVAILABLE
  ``NEIGHBOUR_UNAVAILABLE`` naming 420100 at once (its retries with backoff
  included), nothing runs; after the city is restarted on the same port the
  same call with the same idempotency key succeeds, and repeating it is
  answered from the province's store: one share request in all.
"""

from __future__ import annotations

import signal
import time

import grpc
import pytest

from tests.integration.catalog_registry.support import failure
from tests.integration.federation.support import CITY, Chain, apply_request, events, wait_for

pytestmark = pytest.mark.integration

Code = grpc.StatusCode


def test_a_call_without_budget_for_a_hop_is_refused_at_the_origin(chain: Chain) -> None:
    purpose = "没有余量的截止时间"
    apply = chain.exchange(chain.county).ApplyForData
    md = chain.clerk(chain.county)
    details = failure(apply, apply_request(purpose), metadata=md, timeout=0.02)
    assert details.code is Code.DEADLINE_EXCEEDED
    assert chain.requests_at(chain.province, purpose) == []


def test_a_slow_link_ends_in_deadline_exceeded_and_nothing_runs(chain: Chain) -> None:
    purpose = "慢速链路"
    apply = chain.exchange(chain.county).ApplyForData
    apply(apply_request("慢速链路之前"), metadata=chain.clerk(chain.county), timeout=20)  # warm
    chain.uplink.delay = 1.5
    try:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as late:
            apply(apply_request(purpose), metadata=chain.clerk(chain.county), timeout=1.0)
        elapsed = time.monotonic() - started
    finally:
        chain.uplink.delay = 0.0
    assert late.value.code() is Code.DEADLINE_EXCEEDED
    assert elapsed < 2.0
    time.sleep(2.0)  # the delayed envelope reaches the city after its deadline
    assert chain.requests_at(chain.province, purpose) == []


def test_a_dead_middle_node_fails_fast_and_the_retry_after_restart_runs_once(chain: Chain) -> None:
    purpose = "中间节点故障后重试"
    request = apply_request(purpose)
    md = (*chain.clerk(chain.county), ("x-idempotency-key", "after-restart-1"))
    apply = chain.exchange(chain.county).ApplyForData
    chain.city.stop(signal.SIGKILL)

    started = time.monotonic()
    details = failure(apply, request, metadata=md, timeout=20)
    elapsed = time.monotonic() - started
    assert (details.code, details.reason) == (Code.UNAVAILABLE, "NEIGHBOUR_UNAVAILABLE")
    assert details.metadata["region"] == CITY
    assert elapsed < 2.0, f"UNAVAILABLE took {elapsed:.2f} s"
    assert chain.requests_at(chain.province, purpose) == []
    refused = wait_for(
        lambda: [e for e in events(chain.county) if e.reason == "NEIGHBOUR_UNAVAILABLE"],
        what="the county's record of the failure",
    )
    assert refused[-1].details["attempts"] == "3"  # retried with backoff before giving up

    chain.start(CITY)  # same configuration, same federation port

    def retried() -> object:
        try:
            return apply.with_call(request, metadata=md, timeout=20)
        except grpc.RpcError as error:
            if error.code() is not Code.UNAVAILABLE:
                raise
            return None

    reply, _ = wait_for(retried, timeout=20, what="the call through the restarted city")
    again, again_call = apply.with_call(request, metadata=md, timeout=20)
    assert again.request.id == reply.request.id
    assert dict(again_call.trailing_metadata())["x-zhida-replayed"] == "1"
    assert [r.id for r in chain.requests_at(chain.province, purpose)] == [reply.request.id]
