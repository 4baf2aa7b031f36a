"""``zhida.audit.v1.AuditService``: the log over gRPC (the only gRPC-aware module here).

Translates protobuf to the plain API of :class:`~audit_log.log.AuditLog`,
:mod:`~audit_log.search`, :mod:`~audit_log.export` and
:mod:`~audit_log.witness`, and back. The node's interceptor has already
authenticated the caller and checked its role against
:data:`zhida.auth.policy.RPC_POLICY`; this module adds the rules a role table
cannot express: a holder's search is forced onto its own events, and only a
node of a region below this one may have its log cosigned. Blocking work runs
in the runtime's I/O threads; every error is a :class:`zhida.errors.ZhidaError`
with a reason (and field violations for bad input).

Example::

    import grpc
    from zhida.audit.v1 import audit_service_pb2 as pb, audit_service_pb2_grpc as rpc

    stub = rpc.AuditServiceStub(grpc.insecure_channel("127.0.0.1:50051"))
    md = [("authorization", f"Bearer {auditor_token}")]
    page = stub.SearchEvents(pb.SearchEventsRequest(organisation="114201000000301708"), metadata=md)
    cp = stub.GetCheckpoint(pb.GetCheckpointRequest(), metadata=md)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from audit_log.events import Action, Outcome
from audit_log.export import ExportRecord, export_range
from audit_log.log import AuditLog
from audit_log.search import SearchRequest, search_events
from audit_log.storage import StoredEvent
from audit_log.witness import CosignResult, Witness, check_child
from exchange.federation.state import SyncState
from exchange.federation.witnessing import last_cosigned
from zhida.audit.v1 import audit_service_pb2 as pb
from zhida.audit.v1 import audit_service_pb2_grpc as pb_grpc
from zhida.auth.principal import Role
from zhida.errors import FailedPrecondition, FieldViolation, InvalidArgument, PermissionDenied
from zhida.server.context import current_principal
from zhida.server.runtime import NodeRuntime

EXPORT_CHUNK = 256
# How often a serving node signs a checkpoint of its log (when it grew).
CHECKPOINT_INTERVAL = 60.0
_OUTCOMES = {
    pb.OUTCOME_OK: Outcome.OK,
    pb.OUTCOME_DENIED: Outcome.DENIED,
    pb.OUTCOME_ERROR: Outcome.ERROR,
}
_OUTCOME_NUMBERS = {v: k for k, v in _OUTCOMES.items()}


def event_message(stored: StoredEvent) -> pb.Event:
    """The wire form of a stored entry (fields decoded from its canonical bytes)."""
    event = stored.event()
    time = Timestamp()
    time.FromDatetime(event.time)
    return pb.Event(
        index=stored.index,
        leaf=stored.leaf,
        time=time,
        action=event.action.value,
        outcome=_OUTCOME_NUMBERS[event.outcome],
        reason=event.reason or "",
        organisation=event.organisation or "",
        role=event.role or "",
        subject=event.subject or "",
        resource=event.resource or "",
        licence_id=event.licence_id or "",
        holder_ref=event.holder_ref or "",
        purpose=event.purpose or "",
        matter=event.matter or "",
        legal_basis=event.legal_basis or "",
        node=event.node or "",
        trace_id=event.trace_id or "",
        details=dict(event.details),
    )


def _time(request: Any, field: str) -> datetime | None:
    if not request.HasField(field):
        return None
    value: datetime = getattr(request, field).ToDatetime(tzinfo=UTC)
    return value


def search_request(request: pb.SearchEventsRequest) -> SearchRequest:
    """Validate the wire request (names the bad field) and convert it."""
    violations = []
    actions = []
    for i, name in enumerate(request.actions):
        try:
            actions.append(Action(name))
        except ValueError:
            violations.append(FieldViolation(f"actions[{i}]", f"unknown action {name!r}"))
    if request.outcome not in (pb.OUTCOME_UNSPECIFIED, *_OUTCOMES):
        violations.append(FieldViolation("outcome", f"unknown outcome {request.outcome}"))
    if request.page_size < 0:
        violations.append(FieldViolation("page_size", "must not be negative"))
    if violations:
        raise InvalidArgument(
            f"{violations[0].field}: {violations[0].description}",
            reason="INVALID_SEARCH",
            violations=violations,
        )
    return SearchRequest(
        organisation=request.organisation or None,
        subject=request.subject or None,
        resource=request.resource or None,
        licence_id=request.licence_id or None,
        holder_id=request.holder_id or None,
        actions=tuple(actions),
        outcome=_OUTCOMES.get(request.outcome),
        since=_time(request, "from_time"),
        until=_time(request, "to_time"),
        newest_first=request.newest_first,
        page_size=request.page_size,
        page_token=request.page_token,
    )


class AuditService(pb_grpc.AuditServiceServicer):
    """See ``protos/zhida/audit/v1/audit_service.proto``."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self._runtime = runtime
        self.log: AuditLog = runtime.audit  # the process's one log, shared by every service
        self.log.start_publishing(CHECKPOINT_INTERVAL)
        self._witness = Witness(self.log.storage, self.log.keys.cosigner)

    async def SearchEvents(
        self, request: pb.SearchEventsRequest, context: Any
    ) -> pb.SearchEventsResponse:
        wanted = search_request(request)
        principal = current_principal()
        if principal.role is Role.HOLDER:
            own = principal.subject.strip().upper()
            if wanted.holder_id is not None and wanted.holder_id.strip().upper() != own:
                raise PermissionDenied(
                    "a holder may only search events about itself",
                    reason="HOLDER_OWN_EVENTS_ONLY",
                )
            wanted = replace(wanted, holder_id=principal.subject)
        page = await self._runtime.run_blocking(search_events, self.log, wanted)
        return pb.SearchEventsResponse(
            events=[event_message(e) for e in page.events], next_page_token=page.next_page_token
        )

    async def GetCheckpoint(
        self, request: pb.GetCheckpointRequest, context: Any
    ) -> pb.GetCheckpointResponse:
        if request.witnessed:
            return await self._runtime.run_blocking(self._witnessed)
        # Always fresh (it also refreshes the cache the proof defaults use).
        signed = await self._runtime.run_blocking(self.log.require_checkpoint)
        return pb.GetCheckpointResponse(
            checkpoint=signed.note,
            origin=signed.checkpoint.origin,
            tree_size=signed.checkpoint.size,
            root_hash=signed.checkpoint.root_hash,
            verifier_key=self.log.keys.verifier.vkey(),
        )

    def _witnessed(self) -> pb.GetCheckpointResponse:
        """The newest cosigned checkpoint, as the federation's witness client stored it."""
        cosigned = last_cosigned(SyncState(self._runtime.database))
        if cosigned is None:
            raise FailedPrecondition(
                "no checkpoint of this log has been cosigned by a witness yet",
                reason="NOT_WITNESSED",
            )
        origin = cosigned.note.split("\n", 1)[0]
        at = Timestamp()
        at.FromDatetime(datetime.fromtimestamp(cosigned.cosigned_at, UTC))
        return pb.GetCheckpointResponse(
            checkpoint=cosigned.note,
            origin=origin,
            tree_size=cosigned.size,
            root_hash=bytes.fromhex(cosigned.root_hash),
            verifier_key=self.log.keys.verifier.vkey(),
            witness_key=cosigned.witness_key,
            cosigned_at=at,
        )

    async def GetInclusionProof(
        self, request: pb.GetInclusionProofRequest, context: Any
    ) -> pb.GetInclusionProofResponse:
        proof = await self._runtime.run_blocking(
            self.log.inclusion_proof, request.index, request.tree_size or None
        )
        return pb.GetInclusionProofResponse(
            index=proof.index, tree_size=proof.tree_size, leaf_hash=proof.leaf_hash,
            proof=proof.proof,
        )  # fmt: skip

    async def GetConsistencyProof(
        self, request: pb.GetConsistencyProofRequest, context: Any
    ) -> pb.GetConsistencyProofResponse:
        second = request.second_size or None
        if second is None:
            signed = await self._runtime.run_blocking(
                lambda: self.log.require_checkpoint(cached=True)
            )
            second = signed.checkpoint.size
        proof = await self._runtime.run_blocking(
            self.log.consistency_proof, request.first_size, second
        )
        return pb.GetConsistencyProofResponse(
            first_size=request.first_size, second_size=second, proof=proof
        )

    async def ExportEvents(
        self, request: pb.ExportEventsRequest, context: Any
    ) -> AsyncIterator[pb.ExportEventsResponse]:
        signed, records = await self._runtime.run_blocking(
            export_range, self.log, request.start, request.end or None
        )
        chunks = _chunked(records)
        first = True
        done: list[ExportRecord] = []
        while chunk := await self._runtime.run_blocking(next, chunks, done):
            for record in chunk:
                yield pb.ExportEventsResponse(
                    checkpoint=signed.note if first else "",
                    event=event_message(record.entry),
                    leaf_hash=record.leaf_hash,
                    tree_size=record.tree_size,
                    inclusion_proof=record.proof,
                )
                first = False

    async def CosignCheckpoint(
        self, request: pb.CosignCheckpointRequest, context: Any
    ) -> pb.CosignCheckpointResponse:
        principal = current_principal()
        result = await self._runtime.run_blocking(self._cosign, request, principal.region_code)
        return pb.CosignCheckpointResponse(
            cosigned_checkpoint=result.cosigned_note,
            cosignature=result.cosignature,
            witness_verifier_key=self._witness.verifier_key,
        )

    def _cosign(self, request: pb.CosignCheckpointRequest, caller_region: str) -> CosignResult:
        origin = request.checkpoint.split("\n", 1)[0]  # the checkpoint's first line
        check_child(origin, caller_region, self._runtime.config.node.region_code)
        return self._witness.cosign(
            request.checkpoint,
            old_size=request.old_size,
            proof=list(request.consistency_proof),
            log_key=request.log_verifier_key or None,
        )


def _chunked(records: Iterator[ExportRecord]) -> Iterator[list[ExportRecord]]:
    chunk: list[ExportRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == EXPORT_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
