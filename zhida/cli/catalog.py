"""``zhida catalog``: the data catalogue and the three lists, on a running node over gRPC.

Every command talks to a node's ``zhida.catalog.v1.CatalogService`` — never to
the database directly — so the node's authorisation, audit log and in-memory
indexes see every change. ``--address`` defaults to ``node.listen`` of the
configuration; the token is ``--token``, else ``$ZHIDA_TOKEN``, else a
development token minted with the node's dev keys (same configuration) for
``--role`` (default ``admin``) and ``--org`` (default: the sample's 湖北省数据局).

Example::

    $ zhida catalog load-sample                     # the node's region's part of the sample
    $ zhida catalog search 营业执照 --region 420000 --subregions
    $ zhida catalog coverage                        # per department and per region
    $ zhida catalog import resources.csv --role department --org 114201000001200107
    $ zhida catalog export --format dcat -o catalog.jsonld
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from catalog_registry import render, wire
from catalog_registry.client import load_sample
from catalog_registry.importexport import read_csv, read_json
from catalog_registry.sample_data import DEPARTMENTS, sample_for_node
from catalog_registry.validation import parse_resource_row
from zhida.auth.mint import mint_token
from zhida.auth.principal import Role
from zhida.catalog.v1 import catalog_service_pb2 as pb
from zhida.catalog.v1 import catalog_service_pb2_grpc as pb_grpc
from zhida.client import bearer, error_details
from zhida.config import Config, load_config
from zhida.errors import FieldViolation
from zhida.node.v1 import node_service_pb2 as node_pb
from zhida.node.v1 import node_service_pb2_grpc as node_grpc

TIMEOUT = 120.0
ADMIN_ORG = DEPARTMENTS["hb-data"].uscc
Handler = Callable[[argparse.Namespace, "Session"], int]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--address", help="node host:port (default: node.listen)")
    common.add_argument("--token", help="bearer token (default: $ZHIDA_TOKEN or a dev token)")
    common.add_argument("--role", default="admin", choices=[r.claim for r in Role],
                        help="role of the minted dev token (default: admin)")  # fmt: skip
    common.add_argument("--org", help="USCC of the minted dev token (default: 湖北省数据局)")
    parser = subparsers.add_parser(
        "catalog",
        help="the data catalogue: import, export, search, coverage, sample",
        description="Work with a running node's catalogue over gRPC (zhida.catalog.v1). "
        "--address defaults to node.listen; the token to --token, $ZHIDA_TOKEN, or a dev "
        "token minted with the node's dev keys.",
    )
    sub = parser.add_subparsers(dest="catalog_command", metavar="SUBCOMMAND", title="subcommands")
    sub.required = True

    imp = sub.add_parser("import", parents=[common], help="register resources from CSV or JSON")
    imp.add_argument(
        "file", type=Path, help="a .csv or .json file (see catalog_registry.importexport)"
    )
    imp.add_argument("--format", choices=("csv", "json"), help="default: from the file suffix")
    imp.set_defaults(handler=_command(cmd_import))

    exp = sub.add_parser("export", parents=[common], help="export the catalogue")
    exp.add_argument("--format", choices=("json", "dcat"), default="json")
    exp.add_argument("--status", action="append", choices=("draft", "published", "retired"))
    exp.add_argument("-o", "--output", type=Path, help="file (default: stdout)")
    exp.set_defaults(handler=_command(cmd_export))

    search = sub.add_parser("search", parents=[common], help="search resources (rich table)")
    search.add_argument("keywords", nargs="*", help="Chinese or English words")
    search.add_argument("--provider", help="provider USCC")
    search.add_argument("--region", help="GB/T 2260 region code")
    search.add_argument("--subregions", action="store_true", help="with --region: and below")
    search.add_argument("--level", choices=("national", "province", "city", "county"))
    search.add_argument("--share", choices=("unconditional", "conditional", "not_shared"))
    search.add_argument("--status", action="append", choices=("draft", "published", "retired"))
    search.add_argument("--limit", type=int, default=20, help="page size (default 20)")
    search.add_argument("--page-token", default="", help="next page of an earlier search")
    search.set_defaults(handler=_command(cmd_search))

    cov = sub.add_parser("coverage", parents=[common], help="coverage per department and region")
    cov.set_defaults(handler=_command(cmd_coverage))

    sample = sub.add_parser(
        "load-sample", parents=[common], help="load the node's region's part of the sample"
    )
    sample.set_defaults(handler=_command(cmd_load_sample))


class Session:
    """A channel to the node and the caller's metadata (plus dev tokens per department)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.config: Config = load_config(Path(args.config) if args.config else None)
        self.address = args.address or self.config.node.listen
        self.channel = grpc.insecure_channel(self.address)
        self.stub = pb_grpc.CatalogServiceStub(self.channel)
        self.console = Console(stderr=True)
        self._explicit = args.token or os.environ.get("ZHIDA_TOKEN")
        self._role, self._org = Role.from_claim(args.role), args.org or ADMIN_ORG
        self.metadata = bearer(self._explicit or self._mint(self._role, self._org))

    def _mint(self, role: Role, org: str) -> str:
        region = next((d.region_code for d in DEPARTMENTS.values() if d.uscc == org), None)
        return mint_token(self.config, role=role, organisation=org, subject=f"cli-{role.claim}",
                          region_code=region or self.config.node.region_code)  # fmt: skip

    def for_department(self, uscc: str | None) -> tuple[tuple[str, str], ...]:
        """Dev tokens act as each sample department; an explicit token acts for all."""
        if self._explicit or uscc is None:
            return self.metadata
        return bearer(self._mint(Role.DEPARTMENT, uscc))


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
                session.console.print(render.violations_table(details.violations, "problems"))
            return 2
        finally:
            session.channel.close()

    return run


def cmd_import(args: argparse.Namespace, s: Session) -> int:
    text = args.file.read_text(encoding="utf-8-sig")
    csv = (args.format or args.file.suffix.lstrip(".").lower()) == "csv"
    rows = read_csv(text) if csv else read_json(text)
    problems: list[FieldViolation] = []
    columns = (TextColumn("checking rows"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=s.console) as progress:
        task = progress.add_task("rows", total=len(rows))
        for n, row in enumerate(rows, start=1):  # the node checks again; this shows errors early
            _, violations = parse_resource_row(row)
            problems += [FieldViolation(f"rows[{n}].{v.field}", v.description) for v in violations]
            progress.advance(task)
    if problems:
        bad = len({p.field.split(".")[0] for p in problems})
        s.console.print(render.violations_table(problems, f"{bad} bad row(s); nothing imported"))
        return 1
    with s.console.status(f"importing {len(rows)} resources (all or nothing) …"):
        reply = s.stub.ImportResources(
            pb.ImportResourcesRequest(
                format=pb.FILE_FORMAT_CSV if csv else pb.FILE_FORMAT_JSON, content=text
            ),
            metadata=s.metadata,
            timeout=TIMEOUT,
        )
    s.console.print(f"[green]imported {len(reply.codes)} resources as drafts")
    return 0


def cmd_export(args: argparse.Namespace, s: Session) -> int:
    statuses = [wire.STATUS.to_pb[_status(v)] for v in args.status or ()]
    request = pb.ExportCatalogRequest(
        format=pb.EXPORT_FORMAT_DCAT_JSONLD if args.format == "dcat" else pb.EXPORT_FORMAT_JSON,
        statuses=statuses,  # type: ignore[arg-type]
    )
    out = args.output.open("wb") if args.output else sys.stdout.buffer
    count = 0
    try:
        for message in s.stub.ExportCatalog(request, metadata=s.metadata, timeout=TIMEOUT):
            count = message.resource_count or count
            out.write(message.chunk)
    finally:
        if args.output:
            out.close()
    s.console.print(f"exported {count} resources ({args.format})")
    return 0


def _status(value: str) -> Any:
    return next(m for m in wire.STATUS.to_pb if m.value == value)


def cmd_search(args: argparse.Namespace, s: Session) -> int:
    request = pb.SearchResourcesRequest(
        keywords=" ".join(args.keywords),
        provider_code=args.provider or "",
        region_code=args.region or "",
        include_subregions=args.subregions,
        level=pb.Level.Value(f"LEVEL_{(args.level or 'unspecified').upper()}"),
        share_type=pb.ShareType.Value(f"SHARE_TYPE_{(args.share or 'unspecified').upper()}"),
        statuses=[wire.STATUS.to_pb[_status(v)] for v in args.status or ()],  # type: ignore[misc]
        page_size=args.limit,
        page_token=args.page_token,
    )
    reply = s.stub.SearchResources(request, metadata=s.metadata, timeout=TIMEOUT)
    Console().print(render.search_table(reply.hits, f"search: {request.keywords or '(all)'}"))
    if reply.next_page_token:
        Console().print(f"next page: --page-token {reply.next_page_token}")
    return 0


def cmd_coverage(args: argparse.Namespace, s: Session) -> int:
    report = s.stub.GetCoverageReport(
        pb.GetCoverageReportRequest(), metadata=s.metadata, timeout=TIMEOUT
    )
    for table in render.coverage_tables(report):
        Console().print(table)
    return 0


def cmd_load_sample(args: argparse.Namespace, s: Session) -> int:
    # The node's catalogue takes only its own region's resources: ask which region it serves.
    info = node_grpc.NodeServiceStub(s.channel).GetNodeInfo(
        node_pb.GetNodeInfoRequest(), metadata=s.metadata, timeout=TIMEOUT
    )
    region = info.region_code
    cat = sample_for_node(region)
    steps = 2 * len(cat.resources) + len(cat.negative) + len(cat.demands)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=s.console) as progress:
        task = progress.add_task("loading the sample catalogue", total=steps)

        def step(what: str) -> None:
            progress.update(task, advance=1, description=what[:60])

        loaded = load_sample(s.stub, s.for_department, step, region=region)
    Console().print(render.matches_table(loaded.demands, "sample demands and their matches"))
    s.console.print(
        f"[green]loaded {len(loaded.resources)} resources, {len(loaded.negative)} negative-list "
        f"entries, {len(loaded.demands)} demands (the sample's part for region {region})"
    )
    return 0
