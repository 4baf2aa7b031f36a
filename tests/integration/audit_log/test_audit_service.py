"""AuditService on real ``zhida serve`` processes: permissions, proofs, bad input, witnessing.

The test process writes the node's log directly (same database and keys, as a
second worker process would), then talks to the node over gRPC.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from audit_log.checkpoint import CosignatureVerifier, open_checkpoint, open_cosigned_checkpoint
from audit_log.hashes import leaf_hash
from audit_log.log import AuditLog
from audit_log.merkle import root_at, verify_consistency, verify_inclusion
from audit_log.note import Ed25519Verifier
from tests.fixtures.node import NodeFactory, NodeHandle
from tests.unit.audit_log.conftest import make_event
from zhida.audit.v1 import audit_service_pb2 as pb
from zhida.audit.v1 import audit_service_pb2_grpc as pb_grpc
from zhida.auth.principal import Role
from zhida.cli.main import main
from zhida.client import ErrorDetails, error_details

pytestmark = pytest.mark.integration

HOLDER = "42010219900101001X"
N = 40


@pytest.fixture(scope="module")
def audit(node: NodeHandle) -> Iterator[AuditLog]:
    """The node's own log, filled from here: every 4th event is about HOLDER."""
    log = AuditLog.open(node.config)
    ref = log.holder_ref(HOLDER)
    events = [make_event(i, holder_ref=ref) if i % 4 == 0 else make_event(i) for i in range(N)]
    log.sequencer.append_many(events, timeout=30)
    log.publish_checkpoint()
    yield log
    log.close()


@pytest.fixture(scope="module")
def stub(node: NodeHandle) -> pb_grpc.AuditServiceStub:
    return pb_grpc.AuditServiceStub(node.channel())


def _invoke(call: Any, request: Any, metadata: Any) -> None:
    result = call(request, metadata=metadata, timeout=10)
    if not hasattr(result, "DESCRIPTOR"):  # a stream: the error comes while reading it
        list(result)


def _error(call: Any, request: Any, metadata: Any) -> ErrorDetails:
    with pytest.raises(grpc.RpcError) as info:
        _invoke(call, request, metadata)
    details = error_details(info.value)
    assert details is not None
    return details


def test_auditor_searches_everything(
    node: NodeHandle, audit: AuditLog, stub: pb_grpc.AuditServiceStub
) -> None:
    md = node.auth(role=Role.AUDITOR)
    page = stub.SearchEvents(pb.SearchEventsRequest(page_size=15), metadata=md, timeout=10)
    assert [e.index for e in page.events] == list(range(15))
    more = stub.SearchEvents(
        pb.SearchEventsRequest(page_size=15, page_token=page.next_page_token), metadata=md
    )
    assert more.events[0].index == 15
    by_holder = stub.SearchEvents(pb.SearchEventsRequest(holder_id=HOLDER), metadata=md)
    assert [e.index for e in by_holder.events] == list(range(0, N, 4))


def test_holder_sees_only_its_own_events(
    node: NodeHandle, audit: AuditLog, stub: pb_grpc.AuditServiceStub
) -> None:
    md = node.auth(role=Role.HOLDER, subject=HOLDER)
    own = stub.SearchEvents(pb.SearchEventsRequest(), metadata=md, timeout=10)
    assert [e.index for e in own.events] == list(range(0, N, 4))
    assert all(e.holder_ref == audit.holder_ref(HOLDER) for e in own.events)
    other = _error(stub.SearchEvents, pb.SearchEventsRequest(holder_id="110101199003070011"), md)
    assert (other.code, other.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "HOLDER_OWN_EVENTS_ONLY",
    )


@pytest.mark.parametrize("role", [Role.DEPARTMENT, Role.ISSUER, Role.APPLICATION, Role.ADMIN])
def test_other_roles_are_denied(
    node: NodeHandle, audit: AuditLog, stub: pb_grpc.AuditServiceStub, role: Role
) -> None:
    details = _error(stub.SearchEvents, pb.SearchEventsRequest(), node.auth(role=role))
    assert (details.code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
    details = _error(stub.ExportEvents, pb.ExportEventsRequest(), node.auth(role=role))
    assert details.code == grpc.StatusCode.PERMISSION_DENIED


def test_checkpoint_and_proofs_verify(
    node: NodeHandle, audit: AuditLog, stub: pb_grpc.AuditServiceStub
) -> None:
    md = node.auth(role=Role.AUDITOR)
    cp = stub.GetCheckpoint(pb.GetCheckpointRequest(), metadata=md, timeout=10)
    verifier = Ed25519Verifier.from_vkey(cp.verifier_key)
    checkpoint = open_checkpoint(cp.checkpoint, [verifier], origin=cp.origin)
    assert checkpoint.size == N
    assert cp.origin == f"zhida.{node.config.node.region_code}/{node.config.node.name}"
    for index in (0, 17, N - 1):
        proof = stub.GetInclusionProof(pb.GetInclusionProofRequest(index=index), metadata=md)
        verify_inclusion(proof.leaf_hash, index, N, list(proof.proof), checkpoint.root_hash)
    old = stub.GetInclusionProof(pb.GetInclusionProofRequest(index=3, tree_size=10), metadata=md)
    assert old.tree_size == 10
    node_md = node.auth(role=Role.NODE)
    cons = stub.GetConsistencyProof(pb.GetConsistencyProofRequest(first_size=10), metadata=node_md)
    # The old root from the stored tree: what a watcher would have kept from size 10.
    verify_consistency(10, N, list(cons.proof), root_at(10, audit.storage), checkpoint.root_hash)


def test_export_streams_proofs(
    node: NodeHandle, audit: AuditLog, stub: pb_grpc.AuditServiceStub
) -> None:
    md = node.auth(role=Role.AUDITOR)
    messages = list(stub.ExportEvents(pb.ExportEventsRequest(start=30), metadata=md, timeout=10))
    assert [m.event.index for m in messages] == list(range(30, N))
    root = audit.require_checkpoint().checkpoint.root_hash
    for m in messages:
        proof = list(m.inclusion_proof)
        verify_inclusion(leaf_hash(m.event.leaf), m.event.index, m.tree_size, proof, root)


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("GetInclusionProof", pb.GetInclusionProofRequest(index=N), "index"),
        ("GetInclusionProof", pb.GetInclusionProofRequest(index=1, tree_size=10**6), "tree_size"),
        ("GetConsistencyProof", pb.GetConsistencyProofRequest(first_size=0), "first_size"),
        ("GetConsistencyProof", pb.GetConsistencyProofRequest(first_size=N + 1), "first_size"),
        ("SearchEvents", pb.SearchEventsRequest(page_token="bogus"), "page_token"),
        ("SearchEvents", pb.SearchEventsRequest(actions=["licence.eat"]), "actions[0]"),
        ("SearchEvents", pb.SearchEventsRequest(page_size=5000), "page_size"),
        ("ExportEvents", pb.ExportEventsRequest(start=5, end=N + 5), "end"),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(
    node: NodeHandle,
    audit: AuditLog,
    stub: pb_grpc.AuditServiceStub,
    method: str,
    request_: Any,
    field: str,
) -> None:
    details = _error(getattr(stub, method), request_, node.auth(role=Role.AUDITOR))
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details.violations] == [field]


def test_a_parent_node_witnesses_its_child(
    node: NodeHandle, node_factory: NodeFactory, audit: AuditLog
) -> None:
    """The default node (county 420102) gets its checkpoints cosigned by a city node."""
    parent = node_factory.start(
        {"ZHIDA_NODE__REGION_CODE": "420100", "ZHIDA_NODE__NAME": "wuhan"}, name="parent"
    )
    stub = pb_grpc.AuditServiceStub(parent.channel())
    child_md = parent.auth(role=Role.NODE, region=node.config.node.region_code)
    first = audit.require_checkpoint()
    request = pb.CosignCheckpointRequest(
        checkpoint=first.note, log_verifier_key=audit.keys.verifier.vkey()
    )
    reply = stub.CosignCheckpoint(request, metadata=child_md, timeout=10)
    witness = CosignatureVerifier.from_vkey(reply.witness_verifier_key)
    checkpoint, cosigs = open_cosigned_checkpoint(
        reply.cosigned_checkpoint, [audit.keys.verifier], [witness]
    )
    assert checkpoint.size == N
    assert len(cosigs) == 1
    audit.sequencer.append_many([make_event(i) for i in range(N, N + 5)], timeout=30)
    second = audit.publish_checkpoint()
    stale = pb.CosignCheckpointRequest(checkpoint=second.note, old_size=0)
    details = _error(stub.CosignCheckpoint, stale, child_md)
    assert (details.reason, details.metadata.get("witness_size")) == (
        "WITNESS_SIZE_MISMATCH",
        str(N),
    )
    grown = pb.CosignCheckpointRequest(
        checkpoint=second.note, old_size=N, consistency_proof=audit.consistency_proof(N)
    )
    assert stub.CosignCheckpoint(grown, metadata=child_md, timeout=10).cosignature
    auditor = _error(stub.CosignCheckpoint, grown, parent.auth(role=Role.AUDITOR))
    assert auditor.code == grpc.StatusCode.PERMISSION_DENIED
    other = _error(stub.CosignCheckpoint, grown, parent.auth(role=Role.NODE, region="420106"))
    assert other.reason == "WITNESS_WRONG_CALLER"


def test_watch_follows_the_node(
    node: NodeHandle, audit: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = node.mint(role=Role.AUDITOR)
    state = str(tmp_path / "w.json")
    args = [
        "audit",
        "watch",
        "--address",
        node.address,
        "--once",
        "--token",
        token,
        "--state",
        state,
    ]
    assert main(args) == 0
    assert "trusted on first use" in capsys.readouterr().out
    audit.sequencer.append_many([make_event(i) for i in range(100, 103)], timeout=30)
    size = audit.publish_checkpoint().checkpoint.size
    deadline = time.monotonic() + 10  # the node serves a checkpoint up to 1 s old
    while True:
        assert main(args) == 0
        if f"-> {size}: consistent" in capsys.readouterr().out:
            break
        assert time.monotonic() < deadline, "the watcher never saw the new checkpoint"
        time.sleep(0.3)
