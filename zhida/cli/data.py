"""``zhida data``: receive data under a grant, subscribe to changes, upload hosted datasets.

Every command talks to a node's ``zhida.exchange.v1.ExchangeService``. The
token is ``--token``, else ``$ZHIDA_TOKEN``, else a development token minted
with the node's dev keys for ``--role`` (default ``department``) and ``--org``
(a USCC or a sample department key such as ``ja-samr``; default ``ja-samr``,
武汉市江岸区市场监督管理局). Records print as JSON lines
(``{"key": …, "fields": {…}}``); tables and progress go to stderr.

Example::

    $ zhida data request 1-02-001-0000-000008 --key 91420102000000019M
    $ zhida data stream 1-02-001-0000-000008 -o registry.jsonl       # progress bar, resumable
    $ zhida data stream 1-02-001-0000-000008 --cursor 5000 -o rest.jsonl
    $ zhida data upload companies.csv --resource 1-02-001-0000-000008 \\
          --key-item 统一社会信用代码 --org wh-samr
    $ zhida data subscribe 1-02-001-0000-000008
    $ zhida data receive <subscription id> --follow --ack
    $ zhida data deliveries --role auditor
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import grpc
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from catalog_registry.render import violations_table
from catalog_registry.sample_data import DEPARTMENTS
from zhida.auth.mint import mint_token
from zhida.auth.principal import Role
from zhida.client import bearer, error_details
from zhida.config import Config, load_config
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.exchange.v1 import exchange_service_pb2_grpc as pb_grpc
from zhida.provider.v1 import data_provider_service_pb2 as ppb

TIMEOUT = 60.0
CHUNK = 1024 * 1024
DEFAULT_ORG = "ja-samr"
Handler = Callable[[argparse.Namespace, "Session"], int]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--address", help="node host:port (default: node.listen)")
    common.add_argument("--token", help="bearer token (default: $ZHIDA_TOKEN or a dev token)")
    common.add_argument(
        "--role",
        default="department",
        choices=[r.claim for r in Role],
        help="role of the minted dev token (default: department)",
    )
    common.add_argument(
        "--org",
        default=DEFAULT_ORG,
        help="USCC or sample department key of the dev token (default: ja-samr)",
    )
    parser = subparsers.add_parser(
        "data", help="receive data under a grant, subscriptions, hosted uploads",
        description="Data delivery over gRPC (zhida.exchange.v1): only granted items arrive.",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", title="subcommands")
    sub.required = True

    req = sub.add_parser("request", parents=[common], help="query records by key or filters")
    req.add_argument("resource", help="resource code")
    req.add_argument("--key", default="", help="the record key (e.g. a USCC)")
    req.add_argument("--filter", action="append", default=[], metavar="ITEM=VALUE")
    req.add_argument("--page-size", type=int, default=0)
    req.add_argument("--page-token", default="")
    req.set_defaults(handler=_command(cmd_request))

    stream = sub.add_parser("stream", parents=[common], help="stream a whole dataset")
    stream.add_argument("resource", help="resource code")
    stream.add_argument("--cursor", default="", help="resume after this cursor")
    stream.add_argument("--batch-size", type=int, default=0)
    stream.add_argument("-o", "--output", type=Path, help="JSON lines file (default: stdout)")
    stream.set_defaults(handler=_command(cmd_stream))

    subscribe = sub.add_parser("subscribe", parents=[common], help="subscribe to changes")
    subscribe.add_argument("resource", help="resource code")
    subscribe.set_defaults(handler=_command(cmd_subscribe))

    subs = sub.add_parser("subscriptions", parents=[common], help="list subscriptions")
    subs.set_defaults(handler=_command(cmd_subscriptions))

    cancel = sub.add_parser("unsubscribe", parents=[common], help="cancel a subscription")
    cancel.add_argument("subscription")
    cancel.set_defaults(handler=_command(cmd_unsubscribe))

    receive = sub.add_parser("receive", parents=[common], help="receive a subscription's changes")
    receive.add_argument("subscription")
    receive.add_argument("--cursor", default="", help="default: the acknowledged cursor")
    receive.add_argument("--follow", action="store_true", help="keep waiting for new changes")
    receive.add_argument("--ack", action="store_true", help="acknowledge each message received")
    receive.set_defaults(handler=_command(cmd_receive))

    ack = sub.add_parser("ack", parents=[common], help="acknowledge changes up to a cursor")
    ack.add_argument("subscription")
    ack.add_argument("cursor")
    ack.set_defaults(handler=_command(cmd_ack))

    upload = sub.add_parser("upload", parents=[common], help="upload data to the hosted provider")
    upload.add_argument("file", type=Path, help="a .csv or .json file")
    upload.add_argument("--resource", required=True, help="resource code")
    upload.add_argument("--key-item", required=True, help="the item holding each record's key")
    upload.add_argument("--mode", choices=("snapshot", "changes"), default="snapshot")
    upload.add_argument("--format", choices=("csv", "json"), help="default: from the suffix")
    upload.add_argument("--upload-id", help="idempotency id (default: a new one)")
    upload.set_defaults(handler=_command(cmd_upload))

    deliveries = sub.add_parser("deliveries", parents=[common], help="list delivery records")
    deliveries.add_argument("--resource", default="")
    deliveries.add_argument("--limit", type=int, default=50)
    deliveries.set_defaults(handler=_command(cmd_deliveries))


class Session:
    """A channel to the node and the caller's metadata."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.config: Config = load_config(Path(args.config) if args.config else None)
        self.address = args.address or self.config.node.listen
        self.channel = grpc.insecure_channel(
            self.address, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        )
        self.stub = pb_grpc.ExchangeServiceStub(self.channel)
        self.console = Console(stderr=True)
        token = args.token or os.environ.get("ZHIDA_TOKEN")
        self.metadata = bearer(token or self._mint(Role.from_claim(args.role), args.org))

    def _mint(self, role: Role, org: str) -> str:
        dept = DEPARTMENTS.get(org) or next(
            (d for d in DEPARTMENTS.values() if d.uscc == org), None
        )
        return mint_token(
            self.config, role=role, organisation=dept.uscc if dept else org,
            region_code=dept.region_code if dept else self.config.node.region_code,
            subject=f"cli-{role.claim}",
        )  # fmt: skip


def _command(fn: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        session = Session(args)
        try:
            return fn(args, session)
        except grpc.RpcError as error:
            details = error_details(error)
            session.console.print(
                f"[red]zhida: {details.code.name} {details.reason}: {details.message}"
            )
            if details.violations:
                session.console.print(violations_table(details.violations, "problems"))
            return 2
        finally:
            session.channel.close()

    return run


def _line(record: ppb.Record) -> str:
    return json.dumps({"key": record.key, "fields": dict(record.fields)}, ensure_ascii=False)


def cmd_request(args: argparse.Namespace, s: Session) -> int:
    filters = dict(f.partition("=")[::2] for f in args.filter)
    reply = s.stub.RequestData(
        pb.RequestDataRequest(
            resource_code=args.resource, key=args.key, filters=filters,
            page_size=args.page_size, page_token=args.page_token,
        ),
        metadata=s.metadata, timeout=TIMEOUT,
    )  # fmt: skip
    for record in reply.records:
        print(_line(record))
    s.console.print(
        f"{len(reply.records)} record(s) under grant {reply.grant_id}; items delivered: "
        f"{'、'.join(reply.items_delivered) or '(none)'}"
    )
    for w in reply.items_withheld:
        s.console.print(f"[yellow]withheld {w.item}: {w.legal_basis}")
    if reply.next_page_token:
        s.console.print(f"more: --page-token {reply.next_page_token}")
    return 0


def cmd_stream(args: argparse.Namespace, s: Session) -> int:
    request = pb.StreamDatasetRequest(
        resource_code=args.resource, cursor=args.cursor, batch_size=args.batch_size
    )
    out: IO[str] = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    count, cursor = 0, args.cursor
    columns = (
        SpinnerColumn(), TextColumn("{task.fields[count]:,} records"),
        TextColumn("{task.fields[rate]:,.0f}/s"), TextColumn("cursor {task.fields[cursor]}"),
        TimeElapsedColumn(),
    )  # fmt: skip
    try:
        with Progress(*columns, console=s.console) as progress:
            task = progress.add_task("stream", count=0, rate=0.0, cursor=cursor or "-")
            for batch in s.stub.StreamDataset(request, metadata=s.metadata):
                out.write("".join(_line(r) + "\n" for r in batch.records))
                count += len(batch.records)
                cursor = batch.cursor
                elapsed = progress.tasks[0].elapsed or 1e-9
                progress.update(task, count=count, rate=count / elapsed, cursor=cursor)
    except grpc.RpcError:
        s.console.print(f"[yellow]interrupted after {count:,} records; resume: --cursor {cursor}")
        raise
    finally:
        if args.output:
            out.close()
    s.console.print(f"[green]{count:,} records; last cursor {cursor or '-'}")
    return 0


def _subscriptions_table(subs: Iterator[pb.Subscription] | list[pb.Subscription]) -> Table:
    table = Table(title="subscriptions")
    for col in ("id", "resource", "grant", "acknowledged", "created", "cancelled"):
        table.add_column(col)
    for sub in subs:
        created = sub.created_at.ToDatetime().isoformat(timespec="seconds")
        table.add_row(sub.id, sub.resource_code, sub.grant_id, sub.acknowledged_cursor or "-",
                      created, "yes" if sub.cancelled else "")  # fmt: skip
    return table


def cmd_subscribe(args: argparse.Namespace, s: Session) -> int:
    reply = s.stub.CreateSubscription(
        pb.CreateSubscriptionRequest(resource_code=args.resource), metadata=s.metadata
    )
    s.console.print(_subscriptions_table([reply.subscription]))
    print(reply.subscription.id)
    return 0


def cmd_subscriptions(args: argparse.Namespace, s: Session) -> int:
    reply = s.stub.ListSubscriptions(pb.ListSubscriptionsRequest(), metadata=s.metadata)
    s.console.print(_subscriptions_table(list(reply.subscriptions)))
    return 0


def cmd_unsubscribe(args: argparse.Namespace, s: Session) -> int:
    reply = s.stub.CancelSubscription(
        pb.CancelSubscriptionRequest(subscription_id=args.subscription), metadata=s.metadata
    )
    s.console.print(_subscriptions_table([reply.subscription]))
    return 0


def cmd_receive(args: argparse.Namespace, s: Session) -> int:
    request = pb.ReceiveChangesRequest(
        subscription_id=args.subscription, cursor=args.cursor, follow=args.follow
    )
    count = 0
    try:
        for msg in s.stub.ReceiveChanges(request, metadata=s.metadata):
            for change in msg.changes:
                op = ppb.ChangeOperation.Name(change.operation).removeprefix("CHANGE_OPERATION_")
                line = {"op": op.lower(), "cursor": change.cursor, "key": change.record.key,
                        "fields": dict(change.record.fields)}  # fmt: skip
                print(json.dumps(line, ensure_ascii=False), flush=True)
            count += len(msg.changes)
            if args.ack and msg.cursor:
                s.stub.AcknowledgeChanges(
                    pb.AcknowledgeChangesRequest(
                        subscription_id=args.subscription, cursor=msg.cursor
                    ),
                    metadata=s.metadata,
                )
    except KeyboardInterrupt:
        pass
    s.console.print(f"{count} change(s)")
    return 0


def cmd_ack(args: argparse.Namespace, s: Session) -> int:
    reply = s.stub.AcknowledgeChanges(
        pb.AcknowledgeChangesRequest(subscription_id=args.subscription, cursor=args.cursor),
        metadata=s.metadata,
    )
    s.console.print(_subscriptions_table([reply.subscription]))
    return 0


def cmd_upload(args: argparse.Namespace, s: Session) -> int:
    data = args.file.read_bytes()
    fmt = args.format or args.file.suffix.lstrip(".").lower()
    header = pb.UploadHeader(
        resource_code=args.resource, key_item=args.key_item,
        mode=pb.UPLOAD_MODE_CHANGES if args.mode == "changes" else pb.UPLOAD_MODE_SNAPSHOT,
        format=pb.DATASET_FORMAT_JSON if fmt == "json" else pb.DATASET_FORMAT_CSV,
        upload_id=args.upload_id or uuid.uuid4().hex,
    )  # fmt: skip

    def parts() -> Iterator[pb.UploadDatasetRequest]:
        yield pb.UploadDatasetRequest(header=header)
        for i in range(0, len(data), CHUNK):
            yield pb.UploadDatasetRequest(chunk=data[i : i + CHUNK])

    with s.console.status(f"uploading {len(data):,} bytes (all or nothing) …"):
        reply = s.stub.UploadDataset(parts(), metadata=s.metadata, timeout=600)
    state = "replayed (already applied)" if reply.replayed else "applied"
    s.console.print(
        f"[green]{state}: version {reply.version}, {reply.records_upserted} upserted, "
        f"{reply.records_deleted} deleted, {reply.records_total} records; "
        f"upload id {header.upload_id}"
    )
    return 0


def cmd_deliveries(args: argparse.Namespace, s: Session) -> int:
    reply = s.stub.ListDeliveries(
        pb.ListDeliveriesRequest(resource_code=args.resource, page_size=args.limit),
        metadata=s.metadata,
    )
    table = Table(title="deliveries (newest first)")
    for col in ("when", "kind", "requester", "resource", "items", "records", "purpose"):
        table.add_column(col)
    for d in reply.deliveries:
        kind = pb.DeliveryKind.Name(d.kind).removeprefix("DELIVERY_KIND_").lower()
        table.add_row(
            d.delivered_at.ToDatetime().isoformat(timespec="seconds"), kind, d.requester_org,
            d.resource_code, "、".join(d.items), str(d.record_count), d.purpose,
        )  # fmt: skip
    s.console.print(table)
    return 0
