"""``zhida audit``: search, export, verify, sign checkpoints and watch the access log.

Local commands open the node's own database (from the configuration) and its
keys; ``watch`` talks to a node over gRPC.

Example::

    $ zhida audit search --holder 42010219900101001X --limit 20
    $ zhida audit checkpoint                       # sign the tree as it is now
    $ zhida audit export --from 0 --to 1000 audit.jsonl
    $ zhida audit verify                           # exit 1 naming the first bad entry
    $ zhida audit watch --address 127.0.0.1:50051 --once
    $ zhida audit keys                             # the log's and the witness's public keys
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from audit_log.events import Action, Outcome
from audit_log.export import write_jsonl
from audit_log.keys import keys_for_config
from audit_log.log import AuditLog
from audit_log.search import SearchRequest, search_events
from audit_log.verify import verify_log
from audit_log.watch import WatchAlarm, load_state, save_state, watch_step
from zhida.audit.v1 import audit_service_pb2_grpc as pb_grpc
from zhida.auth.principal import Role
from zhida.config import Config, load_config
from zhida.db import Database
from zhida.db.migrate import current_revision, head_revision
from zhida.errors import FailedPrecondition

WATCH_INTERVAL = 10.0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("audit", help="search, export, verify and watch the access log")
    sub = parser.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", title="subcommands")
    sub.required = True

    search = sub.add_parser("search", help="search events (rich table)")
    search.add_argument("--org", help="organisation (USCC) of the caller")
    search.add_argument("--subject", help="subject (token sub) of the caller")
    search.add_argument("--resource", help="resource code")
    search.add_argument("--licence", help="licence identifier")
    search.add_argument("--holder", help="holder id in clear (hashed with the node's key)")
    search.add_argument("--action", action="append", choices=[a.value for a in Action])
    search.add_argument("--outcome", choices=[o.value for o in Outcome])
    search.add_argument("--since", type=datetime.fromisoformat, help="ISO time, inclusive")
    search.add_argument("--until", type=datetime.fromisoformat, help="ISO time, exclusive")
    search.add_argument("--limit", type=int, default=50, help="page size (default 50)")
    search.add_argument("--page-token", default="", help="next page of an earlier search")
    search.add_argument("--newest-first", action="store_true")
    search.set_defaults(handler=cmd_search)

    export = sub.add_parser("export", help="write entries with inclusion proofs as JSON Lines")
    export.add_argument("--from", dest="start", type=int, default=0, help="first index")
    export.add_argument("--to", dest="end", type=int, help="end index, exclusive (default: all)")
    export.add_argument("file", type=Path, help="output .jsonl file")
    export.set_defaults(handler=cmd_export)

    verify = sub.add_parser("verify", help="re-check the log against the latest checkpoint")
    verify.add_argument("--from", dest="start", type=int, default=0, help="first index")
    verify.add_argument("--to", dest="end", type=int, help="end index, exclusive (default: all)")
    verify.set_defaults(handler=cmd_verify)

    checkpoint = sub.add_parser("checkpoint", help="sign a checkpoint of the log now")
    checkpoint.set_defaults(handler=cmd_checkpoint)

    keys = sub.add_parser("keys", help="show (and with --create, make) the audit keys")
    keys.add_argument("--create", action="store_true", help="create missing keys")
    keys.set_defaults(handler=cmd_keys)

    watch = sub.add_parser("watch", help="follow a node's checkpoints, check consistency")
    watch.add_argument("--address", help="node host:port (default: node.listen)")
    watch.add_argument("--token", help="auditor bearer token (default: $ZHIDA_TOKEN, or dev)")
    watch.add_argument(
        "--state", type=Path, help="state file (default: <data_dir>/audit-watch.json)"
    )
    watch.add_argument("--key", help="the log's verifier key (default: trust on first use)")
    watch.add_argument("--interval", type=float, default=WATCH_INTERVAL, help="seconds")
    watch.add_argument("--once", action="store_true", help="check once and exit")
    watch.set_defaults(handler=cmd_watch)


def _config(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config) if getattr(args, "config", None) else None)


def _open_log(config: Config) -> AuditLog:
    revision, head = current_revision(config.database.url), head_revision()
    behind = revision is not None and revision.isdigit() and int(revision) < int(head)
    if revision is None or behind:
        raise FailedPrecondition(
            f"database schema is at {revision or 'nothing'}, not {head}: run 'zhida db upgrade'",
            reason="SCHEMA_OUTDATED",
        )
    return AuditLog.open(config, Database(config.database.url, pool_size=2))


def _close(log: AuditLog) -> None:
    log.close()
    db = getattr(log.storage, "database", None)
    if isinstance(db, Database):
        db.dispose()


def cmd_search(args: argparse.Namespace) -> int:
    log = _open_log(_config(args))
    try:
        page = search_events(
            log,
            SearchRequest(
                organisation=args.org, subject=args.subject, resource=args.resource,
                licence_id=args.licence, holder_id=args.holder,
                actions=tuple(Action(a) for a in args.action or ()),
                outcome=Outcome(args.outcome) if args.outcome else None,
                since=_aware(args.since), until=_aware(args.until),
                newest_first=args.newest_first, page_size=args.limit, page_token=args.page_token,
            ),
        )  # fmt: skip
    finally:
        _close(log)
    table = Table(title=f"audit events ({len(page.events)})")
    for column in ("index", "time (UTC)", "action", "outcome", "organisation", "subject", "what"):
        table.add_column(column, overflow="fold")
    for stored in page.events:
        e = stored.event()
        what = " ".join(filter(None, (e.resource, e.licence_id, e.purpose or e.matter)))
        outcome = e.outcome.value if e.reason is None else f"{e.outcome.value}: {e.reason}"
        table.add_row(
            str(stored.index), e.time.strftime("%Y-%m-%d %H:%M:%S"), e.action.value, outcome,
            e.organisation or "", e.subject or "", what,
        )  # fmt: skip
    console = Console()
    console.print(table)
    if page.next_page_token:
        print(f"next page: --page-token {page.next_page_token}")  # unwrapped: copy-paste
    return 0


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.astimezone()  # a naive time on the command line is local time


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=console, transient=False,
    )  # fmt: skip


def cmd_export(args: argparse.Namespace) -> int:
    log = _open_log(_config(args))
    console = Console(stderr=True)
    try:
        with args.file.open("w", encoding="utf-8") as out, _progress(console) as progress:
            task = progress.add_task("export", total=None)
            count = write_jsonl(
                log, out, start=args.start, end=args.end,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )  # fmt: skip
    finally:
        _close(log)
    console.print(f"wrote {count} entries with inclusion proofs to {args.file}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    log = _open_log(_config(args))
    console = Console()
    try:
        with _progress(console) as progress:
            task = progress.add_task("verify", total=None)
            result = verify_log(
                log, start=args.start, end=args.end,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )  # fmt: skip
        unsigned = log.storage.tree_head().size - (
            result.checkpoint.size if result.checkpoint else 0
        )
    finally:
        _close(log)
    against = (
        f"checkpoint {result.checkpoint.origin} size {result.checkpoint.size}"
        if result.checkpoint
        else "the unsigned tree head (no checkpoint yet)"
    )
    if result.problem is None:
        entries = (
            f"entries {result.start}..{result.end - 1}"
            if result.end > result.start
            else "empty range"
        )
        console.print(f"[green]OK[/green]: {entries} verified against {against}")
        if result.checkpoint and unsigned > 0:
            console.print(f"{unsigned} newer entries are not signed yet: 'zhida audit checkpoint'")
        return 0
    problem = result.problem
    console.print(
        f"[red]FAILED[/red]: first bad entry {problem.index} ({problem.kind}): {problem.message}"
    )
    print(f"first bad entry: {problem.index} ({problem.kind})", file=sys.stderr)
    return 1


def cmd_checkpoint(args: argparse.Namespace) -> int:
    log = _open_log(_config(args))
    try:
        signed = log.publish_checkpoint()
    finally:
        _close(log)
    sys.stdout.write(signed.note)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    keys = keys_for_config(_config(args), create=True if args.create else None)
    print(f"origin            {keys.origin}")
    print(f"log verifier key  {keys.verifier.vkey()}")
    print(f"witness key       {keys.cosigner.verifier().vkey()}")
    return 0


def _token(args: argparse.Namespace, config: Config) -> str:
    token = args.token or os.environ.get("ZHIDA_TOKEN")
    if token:
        return str(token)
    from zhida.auth.mint import mint_token

    print("zhida: no --token or $ZHIDA_TOKEN: using a development auditor token", file=sys.stderr)
    return mint_token(
        config, role=Role.AUDITOR, organisation="111000000000170137",
        region_code=config.node.region_code, subject="audit-watch", ttl_seconds=3600,
    )  # fmt: skip


def cmd_watch(args: argparse.Namespace) -> int:
    config = _config(args)
    address = args.address or config.node.listen
    state_path = args.state or config.node.data_dir / "audit-watch.json"
    metadata = (("authorization", f"Bearer {_token(args, config)}"),)
    console = Console()
    state = load_state(state_path)
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.AuditServiceStub(channel)
        while True:
            try:
                state, message = watch_step(stub, metadata, state, key=args.key)
            except WatchAlarm as alarm:
                console.print(f"[red]ALARM[/red] {address}: {alarm}")
                return 1
            except grpc.RpcError as exc:
                console.print(f"[yellow]{address}: {exc.code().name}: {exc.details()}[/yellow]")
                if args.once:
                    return 2
            else:
                save_state(state_path, state)
                console.print(f"[green]ok[/green] {state.origin}: {message}")
                if args.once:
                    return 0
            time.sleep(args.interval)
