"""Demo chapter 1: start the four-level federation, look at it, see the county refuse callers."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.table import Table

from zhida.auth.principal import Role
from zhida.client import bearer, error_details, list_services
from zhida.demo import CITY, COUNTY, DemoContext, DemoError, demo_node, node_at
from zhida.node.v1 import node_service_pb2 as pb
from zhida.node.v1 import node_service_pb2_grpc as pb_grpc

_LEVELS = {
    "national": pb.LEVEL_NATIONAL,
    "province": pb.LEVEL_PROVINCE,
    "city": pb.LEVEL_CITY,
    "county": pb.LEVEL_COUNTY,
}


def chapter(ctx: DemoContext) -> None:
    from exchange.federation.local import LocalFederation

    out = ctx.console
    base = ctx.data_dir / "federation"
    out.print(
        f"starting the local federation in {base}:\n"
        "  one deployment PKI (shared root, node TLS certificates, department seals), then five\n"
        "  [cyan]zhida serve[/cyan] processes on loopback, each with its own SQLite database, "
        "blob directory and dev keys"
    )
    started = time.monotonic()
    ctx.federation = fed = LocalFederation.start(base)
    out.print(f"all five nodes SERVING after {time.monotonic() - started:.1f} s")

    table = Table(title="the local federation: one process per node")
    for col in ("region", "level", "parent", "address (bearer)", "federation (mTLS)", "pid"):
        table.add_column(col)
    for row in fed.rows():
        plan = fed.plans[row.region_code]
        node = fed.nodes[row.region_code]
        info = _node_info(fed.token_for(row.region_code, Role.ADMIN), node.address)
        if info.region_code != row.region_code or info.level != _LEVELS[row.level]:
            raise DemoError(f"node {row.region_code} reports {info.region_code} {info.level}")
        parent = f"{fed.plans[plan.parent].label} {plan.parent}" if plan.parent else "—"
        table.add_row(
            f"{row.label} {row.region_code}", row.level, parent, row.address,
            row.federation_address, str(row.pid),
        )  # fmt: skip
    out.print(table)
    out.print(f"offline verifier bundle of the whole deployment: {fed.trust_bundle_path}")
    _county(ctx)


def _node_info(admin: str, address: str) -> pb.GetNodeInfoResponse:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.NodeServiceStub(channel)
        reply: pb.GetNodeInfoResponse = stub.GetNodeInfo(
            pb.GetNodeInfoRequest(), metadata=bearer(admin), timeout=10
        )
        return reply


def _county(ctx: DemoContext) -> None:
    out = ctx.console
    node = demo_node(ctx)
    node_dir = node.config.node.data_dir
    out.print(f"the story's node is [bold]江岸区 {COUNTY}[/bold] at {node.address}")
    created = sorted(p.name for p in node_dir.iterdir())
    out.print(f"its data directory {node_dir}: {', '.join(created)}")

    with grpc.insecure_channel(node.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        status_name = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
        out.print(f"health check: [green]{status_name}[/green]")
        if health.status != health_pb2.HealthCheckResponse.SERVING:
            raise DemoError("node is not SERVING")

        services = list_services(channel)
        out.print(f"services listed by server reflection: {', '.join(services)}")
        for wanted in ("zhida.node.v1.NodeService", "zhida.federation.v1.FederationService"):
            if wanted not in services:
                raise DemoError(f"reflection does not list {wanted}")

        stub = pb_grpc.NodeServiceStub(channel)
        token = node.mint(Role.DEPARTMENT, subject="clerk-wang")
        me = stub.WhoAmI(pb.WhoAmIRequest(), metadata=bearer(token), timeout=5)
        out.print(
            f"authenticated WhoAmI: subject={me.subject} role={pb.Role.Name(me.role)} "
            f"org={me.organisation} region={me.region_code} trace={me.trace_id}"
        )

        admin = node.mint(Role.ADMIN, subject="admin-li")
        info = stub.GetNodeInfo(pb.GetNodeInfoRequest(), metadata=bearer(admin), timeout=5)
        out.print(
            f"GetNodeInfo (admin): node={info.node_name} region={info.region_code} "
            f"level={pb.Level.Name(info.level)} database={info.database_dialect}"
            f"@{info.schema_revision} blobs={info.blobstore_backend}"
        )

        for label, metadata, want in (
            ("no token", (), "UNAUTHENTICATED"),
            ("a forged token", bearer(token[:-4] + "AAAA"), "UNAUTHENTICATED"),
            ("a department token on an admin call", bearer(token), "PERMISSION_DENIED"),
        ):
            _expect_refusal(ctx, stub, label, metadata, want)

    # Nodes trust each other through mTLS and signed assertions, never bearer tokens.
    city_admin = node_at(ctx, CITY).mint(Role.ADMIN, subject="admin-li")
    with grpc.insecure_channel(node.address) as channel:
        stub = pb_grpc.NodeServiceStub(channel)
        _expect_refusal(
            ctx, stub, "an admin token of the 武汉 node at 江岸区", bearer(city_admin),
            "UNAUTHENTICATED",
        )  # fmt: skip


def _expect_refusal(
    ctx: DemoContext,
    stub: pb_grpc.NodeServiceStub,
    label: str,
    metadata: tuple[tuple[str, str], ...],
    want: str,
) -> None:
    try:
        stub.GetNodeInfo(pb.GetNodeInfoRequest(), metadata=metadata, timeout=5)
    except grpc.RpcError as err:
        details = error_details(err)
        ctx.console.print(f"refused {label}: [yellow]{details.code.name} {details.reason}[/yellow]")
        if details.code.name != want:
            raise DemoError(f"{label}: expected {want}, got {details}") from None
    else:
        raise DemoError(f"{label} was accepted")
