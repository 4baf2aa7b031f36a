"""Demo chapter: the story's access log — read it, prove an entry, tamper with a row, catch it."""

from __future__ import annotations

import sqlite3

import grpc
from rich.table import Table

from audit_log.checkpoint import Checkpoint
from audit_log.log import AuditLog
from audit_log.merkle import verify_inclusion
from audit_log.verify import verify_log
from zhida.audit.v1 import audit_service_pb2 as pb
from zhida.audit.v1 import audit_service_pb2_grpc as pb_grpc
from zhida.auth.principal import Role
from zhida.client import bearer
from zhida.demo import DemoContext, DemoError, demo_node


def chapter(ctx: DemoContext) -> None:
    out = ctx.console
    node = demo_node(ctx)
    auditor = bearer(node.mint(Role.AUDITOR, subject="auditor-zhao"))
    log = AuditLog.open(node.config)  # the operator's view: same database and keys as the node
    try:
        with grpc.insecure_channel(node.address) as channel:
            stub = pb_grpc.AuditServiceStub(channel)
            page = stub.SearchEvents(
                pb.SearchEventsRequest(page_size=25, newest_first=True), metadata=auditor
            )
            events = sorted(page.events, key=lambda e: e.index)
            table = Table(
                title=f"access log of {node.config.node.name}: newest entries (auditor's search)"
            )
            for col in ("#", "action", "outcome", "reason", "caller", "trace"):
                table.add_column(col)
            for e in events:
                caller = f"{e.role} {e.subject}".strip() or "(anonymous)"
                outcome = pb.Outcome.Name(e.outcome).removeprefix("OUTCOME_").lower()
                table.add_row(str(e.index), e.action, outcome, e.reason, caller, e.trace_id)
            out.print(table)
            if not page.events:
                raise DemoError("the story left no events in the access log")

            signed = log.publish_checkpoint()
            out.print("signed checkpoint (C2SP signed note):")
            out.print(signed.note.rstrip(), markup=False, highlight=False, soft_wrap=True)
            reply = stub.GetCheckpoint(pb.GetCheckpointRequest(), metadata=auditor)
            checkpoint = Checkpoint.parse(reply.checkpoint.split("\n\n")[0] + "\n")
            last = events[-1].index
            proof = stub.GetInclusionProof(
                pb.GetInclusionProofRequest(index=last, tree_size=checkpoint.size),
                metadata=auditor,
            )
            verify_inclusion(
                proof.leaf_hash, last, checkpoint.size, list(proof.proof), checkpoint.root_hash
            )
            out.print(
                f"inclusion proof for entry {last} in the tree of {checkpoint.size} entries: "
                f"[green]verified[/green] ({len(proof.proof)} hashes)"
            )

        result = verify_log(log)
        if result.problem is not None:
            raise DemoError(f"the untouched log does not verify: {result.problem}")
        out.print(
            f"zhida audit verify: [green]OK[/green], {result.end} entries match the checkpoint"
        )

        # An operator rewrites who was refused: the named caller of one entry.
        victim = max(e.index for e in events if e.subject)
        path = node.config.database.url.removeprefix("sqlite:///")
        tamper = "UPDATE audit_event SET subject = 'nobody' WHERE idx = ?"
        out.print(f"tampering directly in the database: {tamper} -- idx = {victim}")
        with sqlite3.connect(path) as db:
            (original,) = db.execute(
                "SELECT subject FROM audit_event WHERE idx = ?", (victim,)
            ).fetchone()
            db.execute(tamper, (victim,))
        result = verify_log(log)
        problem = result.problem
        if problem is None or problem.index != victim:
            raise DemoError(f"tampering with entry {victim} was not caught: {problem}")
        out.print(
            f"zhida audit verify: [red]FAILED[/red] at entry {problem.index} ({problem.kind}): "
            f"{problem.message}"
        )
        with sqlite3.connect(path) as db:
            db.execute("UPDATE audit_event SET subject = ? WHERE idx = ?", (original, victim))
        if verify_log(log).problem is not None:
            raise DemoError("the restored log does not verify")
        out.print("restored the row: the log verifies again")
    finally:
        log.close()
