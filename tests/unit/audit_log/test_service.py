"""AuditService handlers in-process: wire conversion, holder restriction, witnessing."""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from audit_log.checkpoint import Checkpoint, sign_checkpoint
from audit_log.export import check_record
from audit_log.log import AuditLog
from audit_log.merkle import root_at, verify_consistency, verify_inclusion
from audit_log.note import Ed25519Signer
from audit_log.service import AuditService
from tests.unit.audit_log.conftest import T0, make_event
from zhida.audit.v1 import audit_service_pb2 as pb
from zhida.auth.principal import Principal, Role
from zhida.config import Config, load_config
from zhida.db import Database
from zhida.db.migrate import upgrade
from zhida.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from zhida.server.context import PRINCIPAL

T = TypeVar("T")
HOLDER = "42010219900101001X"


class FakeRuntime:
    def __init__(self, config: Config, database: Database) -> None:
        self.config, self.database = config, database
        self.audit = AuditLog.open(config, database)

    async def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(None, call)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[AuditService]:
    config = load_config(
        None,
        env={
            "ZHIDA_NODE__DATA_DIR": str(tmp_path),
            "ZHIDA_NODE__NAME": "wuhan",
            "ZHIDA_NODE__REGION_CODE": "420100",
        },
    )
    upgrade(config.database.url)
    database = Database(config.database.url)
    svc = AuditService(FakeRuntime(config, database))  # type: ignore[arg-type]
    ref = svc.log.holder_ref(HOLDER)
    events = [make_event(i, holder_ref=ref) if i % 5 == 0 else make_event(i) for i in range(20)]
    svc.log.sequencer.append_many(events, timeout=30)
    svc.log.publish_checkpoint()
    yield svc
    svc.log.close()
    database.dispose()


def call(
    role: Role,
    method: Callable[..., Any],
    request: Any,
    subject: str = "caller",
    region: str = "420100",
) -> Any:
    principal = Principal(subject, role, "114201000000301708", region, 2_000_000_000)

    async def run() -> Any:
        PRINCIPAL.set(principal)
        result = method(request, None)
        if hasattr(result, "__aiter__"):
            return [item async for item in result]
        return await result

    return asyncio.run(run())


def test_auditor_search_with_filters_and_pages(service: AuditService) -> None:
    since = Timestamp()
    since.FromDatetime(T0.replace(second=5))
    request = pb.SearchEventsRequest(actions=["licence.fetch"], from_time=since, page_size=2)
    first = call(Role.AUDITOR, service.SearchEvents, request)
    assert [e.index for e in first.events] == [6, 9]
    assert first.events[1].outcome == pb.OUTCOME_DENIED
    assert first.events[1].reason == "NO_CONSENT"
    assert first.events[0].time.ToDatetime().second == 6
    request.page_token = first.next_page_token
    assert [e.index for e in call(Role.AUDITOR, service.SearchEvents, request).events] == [12, 15]


def test_holder_sees_only_its_own_events(service: AuditService) -> None:
    own = call(Role.HOLDER, service.SearchEvents, pb.SearchEventsRequest(), subject=HOLDER)
    assert [e.index for e in own.events] == [0, 5, 10, 15]
    narrowed = call(
        Role.HOLDER,
        service.SearchEvents,
        pb.SearchEventsRequest(holder_id=HOLDER.lower(), subject="clerk-0"),
        subject=HOLDER,
    )
    assert [e.index for e in narrowed.events] == [0, 5, 10, 15]
    with pytest.raises(PermissionDenied) as info:
        call(
            Role.HOLDER,
            service.SearchEvents,
            pb.SearchEventsRequest(holder_id="110101199003070011"),
            subject=HOLDER,
        )
    assert info.value.reason == "HOLDER_OWN_EVENTS_ONLY"
    stranger = call(Role.HOLDER, service.SearchEvents, pb.SearchEventsRequest(), subject="nobody")
    assert list(stranger.events) == []


def test_bad_search_input_names_fields(service: AuditService) -> None:
    with pytest.raises(InvalidArgument) as info:
        call(
            Role.AUDITOR,
            service.SearchEvents,
            pb.SearchEventsRequest(actions=["licence.fetch", "x.y"], page_size=-1),
        )
    assert [v.field for v in info.value.violations] == ["actions[1]", "page_size"]
    with pytest.raises(InvalidArgument) as info:
        call(Role.AUDITOR, service.SearchEvents, pb.SearchEventsRequest(page_token="nope"))
    assert info.value.violations[0].field == "page_token"


def test_checkpoint_and_proofs(service: AuditService) -> None:
    cp = call(Role.AUDITOR, service.GetCheckpoint, pb.GetCheckpointRequest())
    assert (cp.tree_size, cp.origin) == (20, "zhida.420100/wuhan")
    assert cp.verifier_key == service.log.keys.verifier.vkey()
    inc = call(Role.AUDITOR, service.GetInclusionProof, pb.GetInclusionProofRequest(index=7))
    verify_inclusion(inc.leaf_hash, 7, 20, list(inc.proof), cp.root_hash)
    cons = call(Role.NODE, service.GetConsistencyProof, pb.GetConsistencyProofRequest(first_size=9))
    verify_consistency(9, 20, list(cons.proof), root_at(9, service.log.storage), cp.root_hash)
    with pytest.raises(InvalidArgument) as info:
        call(Role.AUDITOR, service.GetInclusionProof, pb.GetInclusionProofRequest(index=20))
    assert info.value.violations[0].field == "index"
    with pytest.raises(InvalidArgument) as info:
        call(
            Role.AUDITOR,
            service.GetConsistencyProof,
            pb.GetConsistencyProofRequest(first_size=3, second_size=99),
        )
    assert info.value.violations[0].field == "second_size"


def test_export_streams_events_with_proofs(service: AuditService) -> None:
    messages = call(Role.AUDITOR, service.ExportEvents, pb.ExportEventsRequest(start=3, end=8))
    assert [m.event.index for m in messages] == [3, 4, 5, 6, 7]
    assert messages[0].checkpoint.startswith("zhida.420100/wuhan\n20\n")
    assert messages[1].checkpoint == ""
    root = service.log.require_checkpoint().checkpoint.root_hash
    for m in messages:
        check_record(
            {
                "leaf": base64.b64encode(m.event.leaf).decode(),
                "index": m.event.index,
                "tree_size": m.tree_size,
                "inclusion_proof": [base64.b64encode(h).decode() for h in m.inclusion_proof],
            },
            root,
        )
    with pytest.raises(InvalidArgument):
        call(Role.AUDITOR, service.ExportEvents, pb.ExportEventsRequest(start=5, end=21))


def test_cosign_a_child_checkpoint(service: AuditService) -> None:
    child = Ed25519Signer.from_seed("zhida.420102/jiangan", bytes(32))
    note = sign_checkpoint(
        Checkpoint(
            "zhida.420102/jiangan",
            0,
            bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ),
        [child],
    )
    request = pb.CosignCheckpointRequest(checkpoint=note, log_verifier_key=child.verifier().vkey())
    reply = call(Role.NODE, service.CosignCheckpoint, request, region="420102")
    assert reply.cosigned_checkpoint == note + reply.cosignature
    assert reply.witness_verifier_key == service.log.keys.cosigner.verifier().vkey()
    with pytest.raises(FailedPrecondition) as info:  # a node may only submit its own log
        call(Role.NODE, service.CosignCheckpoint, request, region="420106")
    assert info.value.reason == "WITNESS_WRONG_CALLER"
    with pytest.raises(InvalidArgument):
        call(
            Role.NODE,
            service.CosignCheckpoint,
            pb.CosignCheckpointRequest(checkpoint="junk"),
            region="420102",
        )
