"""Demo chapter 1: start a node with no configuration, call it, see it refuse bad callers."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from zhida.auth.principal import Role
from zhida.client import bearer, error_details, list_services
from zhida.demo import COUNTY_NODE, DemoContext, DemoError
from zhida.localnode import LocalNode
from zhida.node.v1 import node_service_pb2 as pb
from zhida.node.v1 import node_service_pb2_grpc as pb_grpc


def chapter(ctx: DemoContext) -> None:
    out = ctx.console
    node_dir = ctx.data_dir / COUNTY_NODE
    out.print(f"starting [cyan]zhida serve[/cyan] with data directory {node_dir}")
    out.print("  (embedded default: SQLite database, local blob directory, dev keys on first run)")
    node = LocalNode.start(node_dir)
    ctx.nodes[COUNTY_NODE] = node
    out.print(f"node is up at {node.address}, pid {node.proc.pid}")
    created = sorted(p.name for p in (node_dir).iterdir())
    out.print(f"first run created: {', '.join(created)}")

    with grpc.insecure_channel(node.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        status_name = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
        out.print(f"health check: [green]{status_name}[/green]")
        if health.status != health_pb2.HealthCheckResponse.SERVING:
            raise DemoError("node is not SERVING")

        services = list_services(channel)
        out.print(f"services listed by server reflection: {', '.join(services)}")
        if "zhida.node.v1.NodeService" not in services:
            raise DemoError("reflection does not list zhida.node.v1.NodeService")

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
            try:
                stub.GetNodeInfo(pb.GetNodeInfoRequest(), metadata=metadata, timeout=5)
            except grpc.RpcError as err:
                details = error_details(err)
                out.print(f"refused {label}: [yellow]{details.code.name} {details.reason}[/yellow]")
                if details.code.name != want:
                    raise DemoError(f"{label}: expected {want}, got {details}") from None
            else:
                raise DemoError(f"{label} was accepted")
