"""Assemble the node's ``grpc.aio`` server: services, interceptor, health, reflection, limits.

Every zhida service is one entry of :data:`SERVICES`. To add one, write the
servicer (its constructor takes the :class:`~zhida.server.runtime.NodeRuntime`),
give each of its methods a row in :data:`zhida.auth.policy.RPC_POLICY`, and add
ONE line here::

    grpc_service(catalog_pb2, catalog_pb2_grpc, CatalogService),

It is then served, authenticated, authorised, measured, reported SERVING by
the standard health service and listed by server reflection.

Limits come from ``[node]``: ``max_concurrent_rpcs`` (gRPC answers
RESOURCE_EXHAUSTED beyond it) and ``max_message_bytes`` (both directions).
The port is bound with ``SO_REUSEPORT`` so ``zhida serve --workers N`` can run
N processes on it.

Example::

    server = await build_server(config, runtime, metrics=RpcMetrics())
    await server.start()          # health: SERVING
    ...
    await server.stop(grace=10)   # health: NOT_SERVING, in-flight calls finish
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from audit_log.service import AuditService
from catalog_registry.service import CatalogService
from exchange.federation.forwarder import Federation, federation_for
from exchange.federation.transport import add_federation_port
from exchange.service import ExchangeService
from licence_vault.service import LicenceVaultService
from zhida.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from zhida.auth.policy import authorize, is_public
from zhida.catalog.v1 import catalog_service_pb2, catalog_service_pb2_grpc
from zhida.errors import ConfigError
from zhida.exchange.v1 import exchange_service_pb2, exchange_service_pb2_grpc
from zhida.federation.v1 import (
    federation_service_pb2,
    federation_service_pb2_grpc,
    licence_index_pb2,
    licence_index_pb2_grpc,
)
from zhida.licence.v1 import licence_vault_service_pb2, licence_vault_service_pb2_grpc
from zhida.node.v1 import node_service_pb2, node_service_pb2_grpc
from zhida.server.federation_service import FederationService
from zhida.server.interceptor import ZhidaInterceptor
from zhida.server.licence_index_service import LicenceIndexService
from zhida.server.metrics import RpcMetrics
from zhida.server.node_service import NodeService
from zhida.server.runtime import NodeRuntime

log = logging.getLogger("zhida.server")

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
REFLECTION_SERVICE: str = reflection.SERVICE_NAME
DRAIN_SETTLE_SECONDS = 0.5


@dataclass(frozen=True)
class ServiceSpec:
    """One gRPC service the node serves."""

    descriptor: ServiceDescriptor
    add_to_server: Callable[[Any, Any], None]  # (servicer, server or GenericHandlersOnly)
    factory: Callable[[NodeRuntime], object]

    @property
    def name(self) -> str:
        return str(self.descriptor.full_name)


def grpc_service(
    pb2: ModuleType, pb2_grpc: ModuleType, factory: Callable[[NodeRuntime], object]
) -> ServiceSpec:
    """The spec of the service ``factory``'s servicer implements.

    ``factory`` is usually the servicer class; the service is the one whose
    generated ``<Name>Servicer`` base class (in ``pb2_grpc``) it derives from.
    """
    bases = [b for b in getattr(factory, "__mro__", ()) if b.__module__ == pb2_grpc.__name__]
    if len(bases) != 1 or not bases[0].__name__.endswith("Servicer"):
        raise TypeError(f"{factory!r} does not derive from one servicer of {pb2_grpc.__name__}")
    name = bases[0].__name__.removesuffix("Servicer")
    return ServiceSpec(
        descriptor=pb2.DESCRIPTOR.services_by_name[name],
        add_to_server=getattr(pb2_grpc, f"add_{name}Servicer_to_server"),
        factory=factory,
    )


# The registry: one line per service.
SERVICES: list[ServiceSpec] = [
    grpc_service(node_service_pb2, node_service_pb2_grpc, NodeService),
    grpc_service(audit_service_pb2, audit_service_pb2_grpc, AuditService),
    grpc_service(catalog_service_pb2, catalog_service_pb2_grpc, CatalogService),
    grpc_service(licence_vault_service_pb2, licence_vault_service_pb2_grpc, LicenceVaultService),
    grpc_service(exchange_service_pb2, exchange_service_pb2_grpc, ExchangeService),
    grpc_service(federation_service_pb2, federation_service_pb2_grpc, FederationService),
    grpc_service(licence_index_pb2, licence_index_pb2_grpc, LicenceIndexService),
]


def server_options(config_max_message_bytes: int) -> list[tuple[str, Any]]:
    """Channel arguments of the node's server."""
    return [
        ("grpc.max_receive_message_length", config_max_message_bytes),
        ("grpc.max_send_message_length", config_max_message_bytes),
        ("grpc.so_reuseport", 1),
    ]


class GenericHandlersOnly:
    """A server as the generated ``add_*Servicer_to_server`` functions see it: their
    methods are registered through the generic handler only.

    grpc.aio's server loop keeps one pending "next call" future per *registered*
    method and waits on all of them for every incoming call (``asyncio.wait``
    over ~40 futures: a cost per call that grows with the number of methods).
    With generic handlers only it waits on one future; the method is found by a
    dict look-up in the service's generic handler instead.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(
        self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        return None  # the same handlers arrived through add_generic_rpc_handlers


@dataclass
class NodeServer:
    """A built (not yet started) node server and its health servicer."""

    server: grpc.aio.Server
    health: HealthServicer
    address: str  # host:port actually bound
    service_names: tuple[str, ...]
    federation_address: str = ""  # host:port of the mutual-TLS federation port, if any
    federation: Federation | None = None

    async def start(self) -> None:
        """Start serving and report every service SERVING."""
        await self.server.start()
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float, settle: float = DRAIN_SETTLE_SECONDS) -> None:
        """Drain: NOT_SERVING, then refuse new calls and let in-flight ones finish.

        For the first ``settle`` seconds (within ``grace``) the server still serves:
        calls a client sent before the signal but gRPC had not yet handed to the
        application would otherwise be cancelled by gRPC's shutdown, and load
        balancers watching health get a moment to move away. Then the listener
        closes (GOAWAY: new calls are refused with UNAVAILABLE) and calls in
        flight get the rest of ``grace`` before they are cancelled.
        """
        await self.health.enter_graceful_shutdown()
        settle = min(settle, grace)
        if settle > 0:
            await asyncio.sleep(settle)
        await self.server.stop(grace - settle)
        if self.federation is not None:
            await self.federation.close()


async def build_server(
    runtime: NodeRuntime,
    *,
    metrics: RpcMetrics | None = None,
    services: Sequence[ServiceSpec] | None = None,
    listen: str | None = None,
) -> NodeServer:
    """Create the server with every service of ``services`` (default :data:`SERVICES`).

    Binds ``listen`` (default ``node.listen``; port 0 picks one); an address that
    cannot be bound raises ConfigError naming ``node.listen``.
    """
    config = runtime.config
    federation = federation_for(runtime)  # None without [federation] settings
    interceptor = ZhidaInterceptor(
        runtime.verifier,
        authorize=authorize,
        is_public=is_public,
        metrics=metrics,
        on_denied=runtime.recorder.denied,
        node_auth=federation.peers if federation is not None else None,
        route=federation.route if federation is not None else None,
    )
    server = grpc.aio.server(
        interceptors=[interceptor],
        maximum_concurrent_rpcs=config.node.max_concurrent_rpcs,
        options=server_options(config.node.max_message_bytes),
    )
    specs = SERVICES if services is None else services
    generic_only = GenericHandlersOnly(server)
    for spec in specs:
        servicer = spec.factory(runtime)
        spec.add_to_server(servicer, generic_only)
        if federation is not None:  # forwarded calls run in-process on the same servicers
            federation.local.add(spec.add_to_server, servicer)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, generic_only)
    names = tuple(spec.name for spec in specs)
    reflection.enable_server_reflection((*names, HEALTH_SERVICE, REFLECTION_SERVICE), server)
    for name in ("", *names):  # nothing is SERVING until start()
        await health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    address = listen or config.node.listen
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError("node.listen", f"cannot listen on {address}: {exc}") from None
    if port == 0:
        raise ConfigError("node.listen", f"cannot listen on {address}")
    host = address.rpartition(":")[0]
    federation_address = add_federation_port(server, config)  # "" without federation.listen
    return NodeServer(server, health, f"{host}:{port}", names, federation_address, federation)
