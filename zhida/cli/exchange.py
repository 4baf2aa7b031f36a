"""``zhida exchange``: share requests and grants on a running node over gRPC.

Every command talks to a node's ``zhida.exchange.v1.ExchangeService``
(``--address``/``--node``, default ``node.listen``). The token is ``--token``,
else ``$ZHIDA_TOKEN``, else a development token minted with the node's dev
keys (same configuration) for ``--role`` and ``--org``: a department applies
and withdraws, an admin of the provider organisation decides and revokes.
Times are ISO 8601 (``2025-12-31`` or ``2025-12-31T18:00+08:00``); a time
without an offset is local time. ``--json`` prints the reply as JSON.

A refused call prints its status, reason and message on one line and each
bad field on its own line (``  field: problem``) on stderr; exit code 1.

Example::

    $ zhida exchange apply 1-01-001-0000-000002 --items 姓名,公民身份号码 \\
          --purpose "核验市场主体登记人身份" --legal-basis "《市场主体登记管理条例》" \\
          --days 90 --role department --org 11420102000040176F
    $ zhida exchange pending --org 114201000000120016              # the provider's admin
    $ zhida exchange approve 3f2a… --items 姓名 --until 2025-09-30 --rate-limit 600
    $ zhida exchange grants --all
    $ zhida exchange revoke 9b1c… --reason "办理完毕"
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToJson
from google.protobuf.message import Message
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from catalog_registry.sample_data import DEPARTMENTS
from exchange import wire
from zhida.auth.mint import mint_token
from zhida.auth.principal import Role
from zhida.client import ErrorDetails, bearer, error_details
from zhida.config import Config, load_config
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.exchange.v1 import exchange_service_pb2_grpc as pb_grpc

TIMEOUT = 60.0
ADMIN_ORG = DEPARTMENTS["hb-data"].uscc
Handler = Callable[[argparse.Namespace, "Session"], Message]
_STATE_NAMES = {v: k.value for k, v in wire.REQUEST_STATE.items()}
_GRANT_NAMES = {v: k.value for k, v in wire.GRANT_STATE.items()}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "exchange",
        help="share requests and grants: apply, decide, list, revoke",
        description="Share requests (共享申请) and grants on a running node over gRPC "
        "(zhida.exchange.v1). The token: --token, $ZHIDA_TOKEN, or a dev token for --role/--org.",
    )
    sub = parser.add_subparsers(dest="exchange_command", metavar="SUBCOMMAND", title="subcommands")
    sub.required = True

    def command(name: str, help_: str, fn: Handler, role: Role) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--address", "--node", dest="address",
                       help="node host:port (default: node.listen)")  # fmt: skip
        p.add_argument("--token", help="bearer token (default: $ZHIDA_TOKEN or a dev token)")
        p.add_argument("--role", default=role.claim, choices=[r.claim for r in Role],
                       help=f"role of the minted dev token (default: {role.claim})")  # fmt: skip
        p.add_argument("--org", help="USCC of the minted dev token (default: 湖北省数据局)")
        p.add_argument("--json", action="store_true", help="print the reply as JSON")
        p.set_defaults(handler=_command(fn))
        return p

    apply = command("apply", "apply for items of a published resource", cmd_apply, Role.DEPARTMENT)
    apply.add_argument("resource_code", help="e.g. 1-01-001-0000-000002")
    apply.add_argument("--items", required=True, help="comma-separated data items")
    apply.add_argument("--purpose", required=True)
    apply.add_argument("--legal-basis", required=True)
    apply.add_argument("--from", dest="start", help="period start (default: now)")
    apply.add_argument("--until", help="period end (default: --days after the start)")
    apply.add_argument("--days", type=int, default=365, help="period length (default 365)")
    apply.add_argument("--volume", type=int, default=0, help="expected records per day")

    pending = command("pending", "requests waiting for my organisation, oldest first",
                      cmd_pending, Role.ADMIN)  # fmt: skip
    pending.add_argument("--limit", type=int, default=0, help="at most this many (default 100)")

    approve = command("approve", "approve a request (fewer items, earlier end)", cmd_approve,
                      Role.ADMIN)  # fmt: skip
    approve.add_argument("request_id")
    approve.add_argument("--items", help="comma-separated subset (default: all requested)")
    approve.add_argument("--until", help="grant end (default: the requested end)")
    approve.add_argument("--rate-limit", type=int, default=0, help="deliveries per minute")

    reject = command("reject", "reject a request with a reason", cmd_reject, Role.ADMIN)
    reject.add_argument("request_id")
    reject.add_argument("--reason", required=True)

    withdraw = command("withdraw", "withdraw my request", cmd_withdraw, Role.DEPARTMENT)
    withdraw.add_argument("request_id")

    show = command("show", "one request", cmd_show, Role.DEPARTMENT)
    show.add_argument("request_id")

    command("requests", "my organisation's requests", cmd_requests, Role.DEPARTMENT)

    grants = command("grants", "grants my organisation holds and has given", cmd_grants,
                     Role.DEPARTMENT)  # fmt: skip
    grants.add_argument("--all", action="store_true", help="also expired and revoked grants")

    revoke = command("revoke", "revoke a grant with a reason", cmd_revoke, Role.ADMIN)
    revoke.add_argument("grant_id")
    revoke.add_argument("--reason", required=True)


class Session:
    """A channel to the node and the caller's metadata."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.config: Config = load_config(Path(args.config) if args.config else None)
        self.address = args.address or self.config.node.listen
        self.channel = grpc.insecure_channel(self.address)
        self.stub = pb_grpc.ExchangeServiceStub(self.channel)
        token = args.token or os.environ.get("ZHIDA_TOKEN") or self._mint(args)
        self.metadata = bearer(token)

    def _mint(self, args: argparse.Namespace) -> str:
        role, org = Role.from_claim(args.role), args.org or ADMIN_ORG
        region = next((d.region_code for d in DEPARTMENTS.values() if d.uscc == org), None)
        return mint_token(self.config, role=role, organisation=org, subject=f"cli-{role.claim}",
                          region_code=region or self.config.node.region_code)  # fmt: skip

    def call(self, method: str, request: Message) -> Message:
        reply: Message = getattr(self.stub, method)(
            request, metadata=self.metadata, timeout=TIMEOUT
        )
        return reply


def render_error(details: ErrorDetails) -> list[str]:
    """The lines a refused call prints: status, reason and message; then one per bad field."""
    head = f"{details.code.name} {details.reason}" if details.reason else details.code.name
    return [f"zhida: {head}: {details.message}"] + [
        f"  {v.field}: {v.description}" for v in details.violations
    ]


def _command(fn: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        session = Session(args)
        try:
            reply = fn(args, session)
        except grpc.RpcError as error:
            for line in render_error(error_details(error)):
                print(line, file=sys.stderr)
            return 1
        finally:
            session.channel.close()
        if args.json:
            print(MessageToJson(reply, ensure_ascii=False, indent=2))
        else:
            _show(reply)
        return 0

    return run


# -- arguments --------------------------------------------------------------------------------
def _items(text: str | None) -> list[str]:
    return [] if not text else [i.strip() for i in text.replace("，", ",").split(",") if i.strip()]


def parse_time(text: str) -> datetime:
    """ISO 8601 date or date-time; without an offset it is local time."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"zhida: not an ISO 8601 time: {text!r}") from None
    return value if value.tzinfo is not None else value.astimezone()


def cmd_apply(args: argparse.Namespace, s: Session) -> Message:
    start = parse_time(args.start) if args.start else datetime.now().astimezone()
    end = parse_time(args.until) if args.until else start + timedelta(days=args.days)
    request = pb.ApplyForDataRequest(
        resource_code=args.resource_code,
        items=_items(args.items),
        purpose=args.purpose,
        legal_basis=args.legal_basis,
        period_start=wire.timestamp(start) if args.start else None,
        period_end=wire.timestamp(end),
        expected_volume=args.volume,
    )
    return s.call("ApplyForData", request)


def cmd_pending(args: argparse.Namespace, s: Session) -> Message:
    return s.call("ListPendingShareRequests", pb.ListPendingShareRequestsRequest(limit=args.limit))


def cmd_approve(args: argparse.Namespace, s: Session) -> Message:
    request = pb.ApproveShareRequestRequest(
        request_id=args.request_id,
        items=_items(args.items),
        valid_until=wire.timestamp(parse_time(args.until)) if args.until else None,
        rate_limit_per_minute=args.rate_limit,
    )
    return s.call("ApproveShareRequest", request)


def cmd_reject(args: argparse.Namespace, s: Session) -> Message:
    request = pb.RejectShareRequestRequest(request_id=args.request_id, reason=args.reason)
    return s.call("RejectShareRequest", request)


def cmd_withdraw(args: argparse.Namespace, s: Session) -> Message:
    return s.call(
        "WithdrawShareRequest", pb.WithdrawShareRequestRequest(request_id=args.request_id)
    )


def cmd_show(args: argparse.Namespace, s: Session) -> Message:
    return s.call("GetShareRequest", pb.GetShareRequestRequest(request_id=args.request_id))


def cmd_requests(args: argparse.Namespace, s: Session) -> Message:
    return s.call("ListShareRequests", pb.ListShareRequestsRequest())


def cmd_grants(args: argparse.Namespace, s: Session) -> Message:
    return s.call("ListGrants", pb.ListGrantsRequest(include_inactive=args.all))


def cmd_revoke(args: argparse.Namespace, s: Session) -> Message:
    request = pb.RevokeGrantRequest(grant_id=args.grant_id, reason=args.reason)
    return s.call("RevokeGrant", request)


# -- output -----------------------------------------------------------------------------------
def _time(message: Any, field: str) -> str:
    value = wire.time_of(message, field)
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M")


def requests_table(requests: Sequence[pb.ShareRequest], title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "state", "resource", "requester", "provider"):  # identifiers: whole
        table.add_column(column, no_wrap=True)
    for column in ("items", "submitted", "until", "purpose / legal basis"):
        table.add_column(column, overflow="fold")
    for r in requests:
        table.add_row(
            r.id, _STATE_NAMES.get(r.state, "?"), r.resource_code, r.requester_org,
            r.provider_org, escape("、".join(r.items)), _time(r, "submitted_at"),
            _time(r, "period_end"),
            escape(f"{r.purpose}\n{r.legal_basis}"),
        )  # fmt: skip
    return table


def grants_table(grants: Sequence[pb.Grant], title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "state", "resource", "requester", "provider"):
        table.add_column(column, no_wrap=True)
    for column in ("items", "valid until", "per minute"):
        table.add_column(column, overflow="fold")
    for g in grants:
        table.add_row(
            g.id, _GRANT_NAMES.get(g.state, "?"), g.resource_code, g.requester_org,
            g.provider_org, escape("、".join(g.items)), _time(g, "valid_until"),
            str(g.rate_limit_per_minute or "-"),
        )  # fmt: skip
    return table


def _show(reply: Message) -> None:
    console = Console()
    request = getattr(reply, "request", None)
    if isinstance(request, pb.ShareRequest):
        state = _STATE_NAMES.get(request.state, "?")
        console.print(f"request {request.id} {state}")
        console.print(requests_table([request], "share request"))
        if request.HasField("decision") and request.decision.reason:
            console.print(f"reason: {escape(request.decision.reason)}")
    grant = getattr(reply, "grant", None)
    if isinstance(grant, pb.Grant) and reply.HasField("grant"):
        console.print(f"grant {grant.id} {_GRANT_NAMES.get(grant.state, '?')}")
        console.print(grants_table([grant], "grant"))
    if isinstance(reply, pb.ListShareRequestsResponse | pb.ListPendingShareRequestsResponse):
        console.print(requests_table(reply.requests, f"{len(reply.requests)} request(s)"))
    if isinstance(reply, pb.ListGrantsResponse):
        console.print(grants_table(reply.held, f"held ({len(reply.held)})"))
        console.print(grants_table(reply.given, f"given ({len(reply.given)})"))
