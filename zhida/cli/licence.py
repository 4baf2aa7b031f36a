"""``zhida licence``: legacy import, licence types, offline verification, the expiry job.

``import`` and ``verify`` talk to a node over gRPC (``--address``, default
``node.listen``; ``--token`` or ``$ZHIDA_TOKEN``, else a development token
minted with the node's dev keys). ``expire`` runs on the node's host, on its
database and signing deployment (the PKI passphrase, as for ``zhida pki``):
every valid licence whose validity ended before today (UTC) is stored
expired with the issuer's signed ``expire`` event. Run it daily (cron); it
is idempotent, and runs at the same time as the node or another run.

Example::

    $ zhida licence types
    $ zhida licence import legacy.csv --org 11420102000040176F     # resumable: run it again
    $ zhida licence verify licence.jws                              # signature, seal, status
    $ zhida licence verify copy.pdf
    $ zhida licence expire                                          # cron: daily
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from licence_vault.importer import CsvImport, ImportSummary, RowOutcome, RowRequest
from licence_vault.model import IssueRequest, LicenceStatus
from licence_vault.offline import CachedNode, offline_verifier
from licence_vault.types import TypeRegistry
from licence_vault.verify import Verification
from zhida.auth.mint import DEMO_ORGS, mint_token
from zhida.auth.principal import Role
from zhida.client import error_details
from zhida.config import Config, load_config
from zhida.errors import FailedPrecondition, InvalidArgument
from zhida.licence.v1 import licence_vault_service_pb2 as pb
from zhida.licence.v1 import licence_vault_service_pb2_grpc as pb_grpc

HOLDER_TYPES = {"111": pb.HOLDER_CODE_TYPE_RESIDENT_ID, "001": pb.HOLDER_CODE_TYPE_USCC}
_COUNTS = (
    "issued {task.fields[issued]} · existing {task.fields[existing]} · failed {task.fields[failed]}"
)
RPC_TIMEOUT = 120.0
_STATUS_NAMES = {
    pb.LICENCE_STATUS_VALID: LicenceStatus.VALID,
    pb.LICENCE_STATUS_REVOKED: LicenceStatus.REVOKED,
    pb.LICENCE_STATUS_SUSPENDED: LicenceStatus.SUSPENDED,
    pb.LICENCE_STATUS_SUPERSEDED: LicenceStatus.SUPERSEDED,
    pb.LICENCE_STATUS_EXPIRED: LicenceStatus.EXPIRED,
}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "licence", help="electronic licences: import, types, verify, expire"
    )
    sub = parser.add_subparsers(dest="licence_command", metavar="SUBCOMMAND", title="subcommands")
    sub.required = True

    def node_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--address", help="node host:port (default: node.listen)")
        p.add_argument("--token", help="bearer token (default: $ZHIDA_TOKEN, or a dev token)")

    imp = sub.add_parser("import", help="issue historical licences from a CSV file (resumable)")
    imp.add_argument("file", type=Path, help="CSV file (see licence_vault.importer)")
    imp.add_argument("--org", help="USCC of the issuing department (for a dev token)")
    imp.add_argument("--batch-size", type=int, default=200, help="licences per call (1-1000)")
    imp.add_argument("--restart", action="store_true", help="ignore the state of earlier runs")
    imp.add_argument("--skip-pdf", action="store_true", help="issue the JWS only")
    node_args(imp)
    imp.set_defaults(handler=cmd_import)

    types = sub.add_parser("types", help="list the licence types and matters")
    types.set_defaults(handler=cmd_types)

    verify = sub.add_parser(
        "verify", help="verify a licence JWS or PDF: signature, seal, chain, current status"
    )
    verify.add_argument("file", type=Path, help="a .jws file (compact JWS) or a PDF")
    verify.add_argument(
        "--cache", type=Path, help="status list cache (default: <data_dir>/status-list-cache)"
    )
    verify.add_argument(
        "--refresh", action="store_true", help="fetch the status list and trust material anew"
    )
    node_args(verify)
    verify.set_defaults(handler=cmd_verify)

    expire = sub.add_parser(
        "expire",
        help="store 'expired' for licences whose validity has ended (daily; idempotent)",
    )
    expire.add_argument(
        "--batch-size", type=int, default=200, help="licences per transaction (1-1000)"
    )
    expire.set_defaults(handler=cmd_expire)


def _config(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config) if getattr(args, "config", None) else None)


def _token(args: argparse.Namespace, config: Config, role: Role, org: str | None) -> str:
    token = args.token or os.environ.get("ZHIDA_TOKEN")
    if token:
        return str(token)
    if not org:
        raise InvalidArgument(
            "give --token (or $ZHIDA_TOKEN), or --org for a development token",
            reason="NO_TOKEN",
        )
    print(
        f"zhida: no --token or $ZHIDA_TOKEN: using a development {role.claim} token",
        file=sys.stderr,
    )
    return mint_token(
        config, role=role, organisation=org, region_code=config.node.region_code,
        subject=f"zhida-licence-{role.claim}", ttl_seconds=6 * 3600,
    )  # fmt: skip


def draft_of(request: IssueRequest) -> pb.LicenceDraft:
    """The wire form of an issue request (what the import sends)."""
    return pb.LicenceDraft(
        request_id=request.request_id,
        type_code=request.type_code,
        holder_code=request.holder_code,
        holder_code_type=(
            HOLDER_TYPES[request.holder_code_type.value]
            if request.holder_code_type
            else pb.HOLDER_CODE_TYPE_UNSPECIFIED
        ),
        holder_name=request.holder_name,
        data=request.data,
        valid_from=request.valid_from.isoformat() if request.valid_from else "",
        valid_until=request.valid_until.isoformat() if request.valid_until else "",
        issue_date=request.issue_date.isoformat() if request.issue_date else "",
        matter_code=request.matter_code,
        matter_name=request.matter_name,
        extension=request.extension,
    )


def cmd_import(args: argparse.Namespace) -> int:
    config = _config(args)
    if not args.file.is_file():
        raise InvalidArgument(f"no file {args.file}", reason="NO_FILE")
    metadata = (("authorization", f"Bearer {_token(args, config, Role.ISSUER, args.org)}"),)
    address = args.address or config.node.listen
    importer = CsvImport(args.file)
    console = Console(stderr=True)
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.LicenceVaultServiceStub(channel)

        def send(batch: Sequence[RowRequest]) -> list[RowOutcome]:
            request = pb.BatchIssueLicencesRequest(
                drafts=[draft_of(r.request) for r in batch], jws_only=args.skip_pdf
            )
            try:
                reply = stub.BatchIssueLicences(request, metadata=metadata, timeout=RPC_TIMEOUT)
            except grpc.RpcError as err:
                details = error_details(err)
                raise FailedPrecondition(
                    f"the node refused the batch: {details}", reason=details.reason or "RPC_FAILED"
                ) from None
            return [
                RowOutcome(
                    row=batch[o.index].row,
                    request_id=o.request_id,
                    licence_id=o.licence.licence_id if o.HasField("licence") else "",
                    created=o.created,
                    error_reason=o.error_reason,
                    error_message=o.error_message,
                    error_fields=tuple(o.error_fields),
                )
                for o in reply.outcomes
            ]

        progress = Progress(
            TextColumn("[bold]importing[/bold] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(_COUNTS),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        total = importer.count_rows()
        with progress:
            task = progress.add_task(args.file.name, total=total, issued=0, existing=0, failed=0)

            def update(n: int, summary: ImportSummary) -> None:
                progress.update(
                    task,
                    completed=summary.skipped + summary.issued + summary.existing + summary.failed,
                    issued=summary.issued,
                    existing=summary.existing,
                    failed=summary.failed,
                )

            try:
                summary = importer.run(
                    send, batch_size=args.batch_size, on_progress=update, restart=args.restart
                )
            except KeyboardInterrupt:
                console.print(
                    f"interrupted: progress is saved in {importer.state_path}; "
                    "run the same command again to continue"
                )
                return 130
    console.print(
        f"{args.file}: {summary.total} rows — issued {summary.issued}, already issued "
        f"{summary.existing}, skipped (done earlier) {summary.skipped}, failed {summary.failed}"
    )
    if summary.failed:
        console.print(f"per-row errors: {summary.error_report}")
        for failure in summary.failures[:5]:
            console.print(f"  row {failure.row}: {failure.error_reason}: {failure.error_message}")
    return 1 if summary.failed else 0


def cmd_types(args: argparse.Namespace) -> int:
    from licence_vault.matters import MatterRegistry

    console = Console()
    table = Table(title="licence types")
    for col in ("code", "name", "defining agency", "holder", "validity", "fields"):
        table.add_column(col)
    for t in TypeRegistry.builtin().all():
        years = f"{t.default_validity_years} years" if t.default_validity_years else "长期"
        fields = ", ".join(f.key + ("" if f.required else "?") for f in t.fields)
        table.add_row(t.code, t.name, t.defining_agency, t.holder_type.label, years, fields)
    console.print(table)
    matters = Table(title="matters")
    for col in ("code", "name", "licence types", "legal basis"):
        matters.add_column(col)
    registry = TypeRegistry.builtin()
    for m in MatterRegistry.builtin().all():
        names = ", ".join(registry.get(c).name for c in m.type_codes)
        matters.add_row(m.code, m.name, names, m.legal_basis or "consent")
    console.print(matters)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    config = _config(args)
    data = args.file.read_bytes()
    address = args.address or config.node.listen
    token = _token(args, config, Role.APPLICATION, DEMO_ORGS["武汉市武昌区政务服务和大数据管理局"])
    metadata = (("authorization", f"Bearer {token}"),)
    console = Console()
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.LicenceVaultServiceStub(channel)
        if data.lstrip().startswith(b"%PDF"):
            # PAdES verification and the look-up of the PDF's licence happen on the vault.
            reply = stub.VerifyLicence(pb.VerifyLicenceRequest(pdf=data), metadata=metadata)
            result = Verification(
                valid=reply.valid,
                reason=reply.reason,
                message=reply.message,
                licence_id=reply.licence_id,
                status=_STATUS_NAMES.get(reply.status),
                issuer_code=reply.issuer_code,
                issuer_name=reply.issuer_name,
            )
        else:
            cache = args.cache or config.node.data_dir / "status-list-cache"
            node = CachedNode(cache, stub, metadata)
            result = offline_verifier(node, args.refresh).verify(data.decode("ascii").strip())
    _print_verdict(console, result)
    return 0 if result.valid else 1


def _print_verdict(console: Console, result: Verification) -> None:
    if result.valid:
        console.print(f"[green]valid[/green]: {result.licence_id}")
    else:
        console.print(f"[red]invalid[/red]: {result.reason}: {result.message}")
    if result.issuer_code:
        console.print(f"  issuer: {result.issuer_name} ({result.issuer_code})")
    if result.status is not None:
        console.print(f"  status: {result.status.value} ({result.status.label})")


def cmd_expire(args: argparse.Namespace) -> int:
    from audit_log.log import AuditLog
    from licence_vault.expiry_job import expiry_event
    from licence_vault.lifecycle import ExpiryReport, expire_due
    from licence_vault.signer import open_signer
    from licence_vault.sql import SqlLicenceStore
    from zhida.db import Database
    from zhida.server.audit import AuditRecorder

    if not 1 <= args.batch_size <= 1000:
        raise InvalidArgument("batch size must be 1..1000", reason="INVALID_BATCH_SIZE")
    config = _config(args)
    database = Database(config.database.url, pool_size=2)
    # each expired licence gets its licence.expire event in the node's log, as the node's job does
    log = AuditLog.open(config, database)
    recorder = AuditRecorder(log, config.node.name)
    try:
        signer, _pdf = open_signer(config)
        progress = Progress(
            TextColumn("[bold]expiring[/bold]"),
            TextColumn("expired {task.fields[expired]} · skipped {task.fields[skipped]}"),
            TextColumn("· failed {task.fields[failed]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        with progress:
            task = progress.add_task("", total=None, expired=0, skipped=0, failed=0)

            def update(report: ExpiryReport) -> None:
                if report.page:  # durable before the next page is expired
                    region = config.node.region_code
                    log.sequencer.append_many(
                        [expiry_event(recorder, item, region) for item in report.page]
                    )
                progress.update(
                    task, expired=report.expired, skipped=report.skipped, failed=report.failed
                )

            report = expire_due(
                SqlLicenceStore(database),
                signer,
                now=datetime.now(UTC),
                batch_size=args.batch_size,
                on_progress=update,
            )
    finally:
        log.close()
        database.dispose()
    print(
        f"licences whose validity ended before {report.today.isoformat()}: {report.due} — "
        f"expired {report.expired}, changed meanwhile {report.skipped}, failed {report.failed}"
    )
    for licence_id, reason, message in report.failures[:10]:
        print(f"  {licence_id}: {reason}: {message}")
    return 1 if report.failed else 0
