"""Demo chapter: the audit trail of one routed request across four nodes, proven and witnessed.

The county's RequestData of the previous chapters passed 江岸区 → 武汉 → 湖北 →
national under one trace id. An auditor reads each node's access log
(``AuditService.SearchEvents``) and finds that node's part: the origin's
event at 江岸区, a forward at 武汉 and at 湖北, the serve and the release at
national. Then, for each node:

* **witnessed** — every node below national sends its signed checkpoints to
  its parent (``witness_interval_seconds``); the parent checks consistency
  with what it cosigned before and cosigns. The auditor asks the node for
  it (``GetCheckpoint`` with ``witnessed``), waiting (with a timeout) until a
  cosigned checkpoint covers the trace's events, and checks
  the log's signature and the parent's cosignature under the keys of the
  deployment. National has no parent: the auditor itself acts as an outside
  witness — it takes the checkpoint it saw before, checks the national log's
  consistency proof to the new one and cosigns it with its own key;
* **included** — an RFC 6962 inclusion proof of each of the trace's events
  in the witnessed tree, checked against the witnessed root;
* **consistent** — the node's newest checkpoint extends the witnessed one
  (consistency proof);
* **verified** — every entry re-checked against the latest checkpoint
  (``zhida audit verify``, the operator's view of the node's database).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC

import grpc
from rich.table import Table

from audit_log.checkpoint import (
    Checkpoint,
    CosignatureSigner,
    check_consistent,
    cosign,
    open_checkpoint,
    open_cosigned_checkpoint,
)
from audit_log.errors import AuditLogError, ProofError
from audit_log.hashes import leaf_hash
from audit_log.keys import keys_for_config
from audit_log.log import AuditLog
from audit_log.merkle import verify_inclusion
from audit_log.note import Ed25519Verifier
from audit_log.sql import SqlLogStorage
from audit_log.verify import verify_log
from zhida.audit.v1 import audit_service_pb2 as pb
from zhida.audit.v1 import audit_service_pb2_grpc as pb_grpc
from zhida.auth.principal import Role
from zhida.client import bearer, error_details
from zhida.db import Database
from zhida.demo import (
    CITY,
    COUNTY,
    NATIONAL,
    PROVINCE,
    DemoContext,
    DemoError,
    channel,
    federation,
    node_at,
)
from zhida.demo.support import Metadata, eventually, label

ROUTE = (COUNTY, CITY, PROVINCE, NATIONAL)
ROLES = {COUNTY: "origin", CITY: "forward", PROVINCE: "forward", NATIONAL: "serve"}
WITNESS_WAIT = 30.0  # seconds; the nodes submit checkpoints every 2 s
AUDITOR_WITNESS = "zhida-demo-auditor"


@dataclass(frozen=True)
class Witnessed:
    """A checkpoint of one node's log with a verified cosignature."""

    checkpoint: Checkpoint
    witness: str  # who cosigned it
    how: str  # how the auditor knows


def chapter(ctx: DemoContext) -> None:
    trace = ctx.facts.get("trace")
    if not trace:
        raise DemoError("no routed request to follow (the routed-exchange chapter sets it)")
    out = ctx.console
    events = _trail(ctx, trace)
    _check_chain(events, set(ctx.facts.get("trace_items", "").split(",")))
    table = Table(title=f"trace {trace} in the access logs of four nodes (auditor's search)")
    for col in ("node", "#", "action", "outcome", "part", "what the node recorded"):
        table.add_column(col, overflow="fold")
    for region in ROUTE:
        for e in events[region]:
            table.add_row(
                label(region), str(e.index), e.action,
                pb.Outcome.Name(e.outcome).removeprefix("OUTCOME_").lower(),
                e.details.get("federation", "delivery"), _recorded(e),
            )  # fmt: skip
    out.print(table)
    first = events[COUNTY][0]
    out.print(
        f"the caller in every node's log: {first.role} {first.subject} of {first.organisation} "
        f"(the signed caller assertion travelled with the request); resource {first.resource}"
    )

    proofs = Table(title="each node's log: witnessed, the trace included, consistent, verified")
    for col in ("node", "witnessed checkpoint", "cosigned by", "inclusion", "→ newest", "verify"):
        proofs.add_column(col, overflow="fold")
    for region in ROUTE:
        proofs.add_row(*_prove(ctx, region, events[region]))
    out.print(proofs)
    out.print(
        "every node's part of the request is in a checkpoint another party cosigned; rewriting "
        "or dropping it would break the consistency proof its witness checks before cosigning "
        "again"
    )


def _recorded(e: pb.Event) -> str:
    d = e.details
    if d.get("federation") == "origin":
        return f"sent to {d['next']} (target {d['target_region']})"
    if d.get("federation") == "forward":
        return f"from {d['peer']} (path {d['path']}), sent to {d['next']}"
    if d.get("federation") == "serve":
        return f"from {d['peer']} (path {d['path']}), served here"
    if e.action == "data.release":
        return f"released {d.get('records', '?')} record(s): {d.get('items', '')}"
    return f"grant {d.get('grant_id', '')[:8]}…, provider {d.get('provider', '')}"


def _check_chain(events: dict[str, list[pb.Event]], granted: set[str]) -> None:
    """Each node's record agrees with its neighbours', one caller throughout, granted items only."""
    for n, region in enumerate(ROUTE):
        hop = [e for e in events[region] if e.details.get("federation") == ROLES[region]]
        if len(hop) != 1:
            raise DemoError(f"{label(region)} recorded {len(hop)} '{ROLES[region]}' events")
        d = hop[0].details
        if n > 0 and d.get("peer") != ROUTE[n - 1]:
            raise DemoError(f"{label(region)} recorded the request from {d.get('peer')}")
        if n < len(ROUTE) - 1 and d.get("next") != ROUTE[n + 1]:
            raise DemoError(f"{label(region)} recorded sending it to {d.get('next')}")
    callers = {(e.organisation, e.subject) for es in events.values() for e in es}
    if len(callers) != 1:
        raise DemoError(f"the nodes recorded different callers: {sorted(callers)}")
    releases = [e for e in events[NATIONAL] if e.action == "data.release"]
    if len(releases) != 1:
        raise DemoError(f"the national node recorded {len(releases)} releases, not one")
    items = releases[0].details.get("items", "")
    if set(items.split(",")) != granted:
        raise DemoError(f"the release names {items}, granted {sorted(granted)}")


def remember_national(ctx: DemoContext) -> None:
    """The auditor notes a signed checkpoint of the national log (to check consistency later)."""
    node = node_at(ctx, NATIONAL)
    keys = keys_for_config(node.config, create=False)
    database = Database.from_config(node.config.database)
    log = AuditLog(SqlLogStorage(database), keys)
    try:
        signed = log.publish_checkpoint()  # the operator's `zhida audit checkpoint`
    finally:
        log.close()
        database.dispose()
    ctx.facts["national_checkpoint"] = signed.note
    ctx.console.print(
        f"(before the request, national's operator signs a checkpoint of its log and the "
        f"auditor notes it: size {signed.checkpoint.size})"
    )


def _auditor(ctx: DemoContext, region: str) -> Metadata:
    return bearer(federation(ctx).token_for(region, Role.AUDITOR, subject="auditor-zhao"))


def _trail(ctx: DemoContext, trace: str) -> dict[str, list[pb.Event]]:
    """Each node's events of ``trace`` (waiting for forwarding nodes' events to be durable)."""

    def search() -> dict[str, list[pb.Event]] | None:
        found = {}
        for region in ROUTE:
            stub = pb_grpc.AuditServiceStub(channel(ctx, region))
            request = pb.SearchEventsRequest(
                actions=["data.request", "data.release"], page_size=1000, newest_first=True
            )
            reply = stub.SearchEvents(request, metadata=_auditor(ctx, region), timeout=30)
            found[region] = sorted(
                (e for e in reply.events if e.trace_id == trace), key=lambda e: e.index
            )
        roles = {r: {e.details.get("federation", "") for e in found[r]} for r in ROUTE}
        return found if all(ROLES[r] in roles[r] for r in ROUTE) else None

    events, _ = eventually(search, within=15, what=f"trace {trace} in the four nodes' logs")
    if not any(e.action == "data.release" for e in events[NATIONAL]):
        raise DemoError("the national node recorded no data.release for the routed request")
    for region in (COUNTY, CITY, PROVINCE):
        if any(e.action == "data.release" for e in events[region]):
            raise DemoError(f"{label(region)} recorded a release: only national holds the data")
    return events


def _prove(ctx: DemoContext, region: str, events: list[pb.Event]) -> list[str]:
    node = node_at(ctx, region)
    stub = pb_grpc.AuditServiceStub(channel(ctx, region))
    auditor = _auditor(ctx, region)
    log_key = keys_for_config(node.config, create=False).verifier
    database = Database.from_config(node.config.database)
    log = AuditLog(SqlLogStorage(database), keys_for_config(node.config, create=False))
    try:
        last = max(e.index for e in events)
        if region == NATIONAL:
            witnessed = _outside_witness(ctx, stub, auditor, log, log_key)
        else:
            witnessed = _parent_witness(ctx, region, stub, auditor, last, log_key)
        root = witnessed.checkpoint
        if root.size <= last:
            raise DemoError(f"{label(region)}: the witnessed tree ({root.size}) misses {last}")
        for e in events:
            proof = stub.GetInclusionProof(
                pb.GetInclusionProofRequest(index=e.index, tree_size=root.size),
                metadata=auditor, timeout=30,
            )  # fmt: skip
            if proof.leaf_hash != leaf_hash(e.leaf):
                raise DemoError(f"{label(region)}: entry {e.index} is not the event shown")
            try:
                verify_inclusion(proof.leaf_hash, e.index, root.size, proof.proof, root.root_hash)
            except ProofError as exc:
                raise DemoError(f"{label(region)}: entry {e.index} not included: {exc}") from None
        newest = _newest(stub, auditor, log_key, root)
        result = verify_log(log)
        if result.problem is not None:
            raise DemoError(f"{label(region)}: zhida audit verify failed: {result.problem}")
    finally:
        log.close()
        database.dispose()
    indices = ", ".join(str(e.index) for e in events)
    return [
        label(region),
        f"size {root.size}\n{witnessed.how}",
        witnessed.witness,
        f"[green]ok[/green]: {indices}",
        f"[green]ok[/green]: size {newest.size}",
        f"[green]OK[/green]: {result.end} entries",
    ]


def _parent_witness(
    ctx: DemoContext,
    region: str,
    stub: pb_grpc.AuditServiceStub,
    auditor: Metadata,
    last: int,
    log_key: Ed25519Verifier,
) -> Witnessed:
    """The node's last checkpoint its parent cosigned (asked over gRPC), once it covers ``last``."""
    fed = federation(ctx)
    parent = fed.plans[region].parent
    if parent is None:
        raise DemoError(f"{label(region)} has no parent to witness it")

    def covered() -> pb.GetCheckpointResponse | None:
        try:
            cosigned = stub.GetCheckpoint(
                pb.GetCheckpointRequest(witnessed=True), metadata=auditor, timeout=10
            )
        except grpc.RpcError as err:
            if error_details(err).reason == "NOT_WITNESSED":
                return None
            raise
        return cosigned if cosigned.tree_size > last else None

    cosigned, _ = eventually(
        covered, within=WITNESS_WAIT, what=f"a checkpoint of {label(region)} cosigned by its parent"
    )
    after = cosigned.cosigned_at.ToDatetime(tzinfo=UTC).timestamp() - float(
        ctx.facts.get("trace_at", "0")
    )
    # the witness key comes from the parent's own configuration, never from the answer
    witness = keys_for_config(node_at(ctx, parent).config, create=False).cosigner.verifier()
    if cosigned.witness_key != witness.vkey():
        raise DemoError(f"{label(region)} pinned another witness key than {label(parent)}'s")
    try:
        checkpoint, cosignatures = open_cosigned_checkpoint(
            cosigned.checkpoint, [log_key], [witness]
        )
    except AuditLogError as exc:
        raise DemoError(f"{label(region)}: the cosigned checkpoint fails: {exc}") from None
    return Witnessed(
        checkpoint,
        f"{label(parent)}\n{cosignatures[0].name}",
        f"cosigned {after:.1f} s after the request",
    )


def _outside_witness(
    ctx: DemoContext,
    stub: pb_grpc.AuditServiceStub,
    auditor: Metadata,
    log: AuditLog,
    log_key: Ed25519Verifier,
) -> Witnessed:
    """National: the auditor checks consistency with the checkpoint it noted and cosigns."""
    noted = ctx.facts.get("national_checkpoint")
    if noted is None:
        raise DemoError("the auditor noted no national checkpoint before the request")
    before = open_checkpoint(noted, [log_key])
    log.publish_checkpoint()  # the operator's `zhida audit checkpoint`: sign the tree now
    after = _checkpoint(stub, auditor, log_key)
    proof: list[bytes] = []
    if 0 < before.size < after.size:
        proof = list(
            stub.GetConsistencyProof(
                pb.GetConsistencyProofRequest(first_size=before.size, second_size=after.size),
                metadata=auditor, timeout=30,
            ).proof
        )  # fmt: skip
    check_consistent(before, after, proof)
    note = stub.GetCheckpoint(pb.GetCheckpointRequest(), metadata=auditor, timeout=30).checkpoint
    key = CosignatureSigner.generate(AUDITOR_WITNESS)
    cosigned = cosign(note, key, int(time.time()))
    checkpoint, cosignatures = open_cosigned_checkpoint(cosigned, [log_key], [key.verifier()])
    if checkpoint != after:
        raise DemoError("the national checkpoint changed while the auditor cosigned it")
    return Witnessed(
        checkpoint,
        f"the auditor (outside witness)\n{cosignatures[0].name}",
        f"consistent with size {before.size} noted before the request",
    )


def _checkpoint(
    stub: pb_grpc.AuditServiceStub, auditor: Metadata, log_key: Ed25519Verifier
) -> Checkpoint:
    note = stub.GetCheckpoint(pb.GetCheckpointRequest(), metadata=auditor, timeout=30).checkpoint
    return open_checkpoint(note, [log_key])


def _newest(
    stub: pb_grpc.AuditServiceStub,
    auditor: Metadata,
    log_key: Ed25519Verifier,
    witnessed: Checkpoint,
) -> Checkpoint:
    """The node's newest checkpoint, checked to extend the witnessed one."""
    newest = _checkpoint(stub, auditor, log_key)
    proof: list[bytes] = []
    if 0 < witnessed.size < newest.size:
        proof = list(
            stub.GetConsistencyProof(
                pb.GetConsistencyProofRequest(
                    first_size=witnessed.size, second_size=newest.size
                ),
                metadata=auditor, timeout=30,
            ).proof
        )  # fmt: skip
    try:
        check_consistent(witnessed, newest, proof)
    except AuditLogError as exc:
        raise DemoError(f"the newest checkpoint does not extend the witnessed one: {exc}") from None
    return newest
