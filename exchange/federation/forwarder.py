"""Forwarding calls between federation nodes (issue 8): the origin, each hop, the serving node.

:class:`Federation` is one node's part of the federation: its
:class:`~exchange.federation.routing.Router`, its
:class:`~exchange.federation.assertion.NodeSigner` (the node certificate's key),
the :class:`~exchange.federation.custody.CustodyVerifier` with the ``jti``
replay cache, the idempotency store, the handlers of the node's own services
(:class:`~exchange.federation.dispatch.LocalHandlers`) and the mTLS channels to
its neighbours (:mod:`exchange.federation.transport`). This module is the
entry point: the node, its construction and the interceptor hook; the paths
are in :mod:`~exchange.federation.forward_unary` (``Forward``, with the
origin's retries, :mod:`~exchange.federation.forward_retry`) and
:mod:`~exchange.federation.forward_stream` (``ForwardStream``), on the shared
parts of :mod:`~exchange.federation.forward_base`; the audit events are
:mod:`~exchange.federation.forward_audit`.

**At the origin** (:meth:`Federation.route`, installed as the interceptor's
``route`` hook, so the services stay untouched): for a method of
:data:`~exchange.federation.targets.FORWARDABLE` whose target region is not
this node's, after the interceptor has authenticated and authorised the
caller, the node signs an assertion of the caller (trace id, the client's
``x-idempotency-key`` or a fresh one, target, digest of method + request, the
deadline — 30 s when the client set none) and calls ``Forward`` on the next hop
with the deadline less ``hop_reserve_ms``. A neighbour that cannot be reached
(or one further down), or an earlier attempt still running, is retried with
exponential backoff and full jitter while the budget allows — each time with
a fresh assertion (new ``jti``) and the same idempotency key. The inner
response comes back as the method's response; the neighbour's error status
comes back unchanged.

**At every other node** (:meth:`Federation.handle`, the ``Forward`` RPC on the
mTLS port): the peer node from its client certificate; the custody chain
verified for this node with the peer as sender (forged, replayed, altered:
UNAUTHENTICATED ``ASSERTION_INVALID``); the envelope checked against the
assertion; trace id and deadline taken from the verified chain; the route
planned with the custody path (ROUTING_LOOP, REGION_UNKNOWN,
DEADLINE_BUDGET_EXHAUSTED). Then either this node's hop record is appended and
the call passed on, or — target is this node — :class:`~exchange.federation.serving.ServingNode`
runs it: the caller's Principal from the chain, this node's policy table, at
most once per idempotency key, in-process, shielded from cancellation.

Every node writes one ``data.request`` audit event per forwarded call with
the shared trace id: ``details.federation`` is ``origin``, ``forward`` or
``serve``, with the method, target region, next hop, path and outcome; a
refusal is recorded with outcome ``denied`` (or ``error``) and its reason.
A node's event is started right after it has started the call to the next hop
(or, serving, once the idempotency store has decided), so its encoding and
group commit run while the call travels on; it is awaited before the node
answers. An error that comes back from further along is then recorded in a
second event. Every failed call ends with the ``x-zhida-path`` trailer of the
node that decided it (:func:`~exchange.federation.remote.refuse`), passed back
unchanged by the nodes on the way.

``ZHIDA_FEDERATION_PHASES=<file>`` records per-phase timestamps of each call
at each node (:mod:`~exchange.federation.phases`), for measuring.

**Streams** (``StreamDataset``, ``ReceiveChanges``: :attr:`Forwardable.streaming`)
take the same way over ``ForwardStream``: :meth:`Federation.route` returns an
async generator behaviour that calls :meth:`Federation.originate_stream`, and
:meth:`Federation.handle_stream` makes every check of :meth:`Federation.handle`
per hop, then relays (:meth:`Federation._relay`) or serves
(:meth:`~exchange.federation.serving.ServingNode.serve_stream`). Messages are
relayed one at a time under gRPC flow control; whatever ends a hop's stream
(done, failed, its caller cancelled) cancels the upstream call, so a client
that cancels ends the stream at the serving node. No idempotency store and no
retry: a stream is a read, resumed by the client from its cursor. The serving
node announces the path in the ``x-zhida-path`` initial metadata.

The replay cache and the idempotency store of a node opened with
:meth:`Federation.open` are tables of its database
(:mod:`~exchange.federation.sql_replay`, :mod:`~exchange.federation.sql_idempotency`):
shared by all ``--workers`` and kept across restarts. Constructed directly,
:class:`Federation` defaults to the in-memory ones (one process; tests).

``FetchLicences`` names no region: the ``x-zhida-target-region`` header, else
:attr:`Federation.licence_region` (an async ``FetchLicencesRequest → region |
None``; default: the licence index, :class:`~exchange.federation.licence_routing.LicenceLocator`
``Federation.licences``).

Example::

    federation = Federation.open(runtime)          # None when [federation] is not set up
    interceptor = ZhidaInterceptor(..., node_auth=federation.peers, route=federation.route)
    federation.local.add(pb_grpc.add_ExchangeServiceServicer_to_server, exchange_servicer)
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from catalog_registry.sql import SqlCatalogRepository
from exchange.federation.assertion import NodeSigner
from exchange.federation.custody import CustodyVerifier
from exchange.federation.dispatch import LocalHandlers
from exchange.federation.forward_base import DEFAULT_DEADLINE_SECONDS, Behaviour
from exchange.federation.forward_base import PATH_TRAILER as PATH_TRAILER
from exchange.federation.forward_base import REPLAYED_TRAILER as REPLAYED_TRAILER
from exchange.federation.forward_base import TRACE_HEADER as TRACE_HEADER
from exchange.federation.forward_retry import BACKOFF_BASE_SECONDS as BACKOFF_BASE_SECONDS
from exchange.federation.forward_retry import BACKOFF_CAP_SECONDS as BACKOFF_CAP_SECONDS
from exchange.federation.forward_retry import MAX_ATTEMPTS as MAX_ATTEMPTS
from exchange.federation.forward_stream import StreamForwarding
from exchange.federation.forward_unary import UnaryForwarding
from exchange.federation.idempotency import IdempotencyStore, InMemoryIdempotencyStore
from exchange.federation.licence_routing import LicenceLocator
from exchange.federation.replay import InMemoryReplayCache, ReplayCache
from exchange.federation.routing import RouteKind, Router, Topology
from exchange.federation.serving import ServingNode
from exchange.federation.sql_idempotency import SqlIdempotencyStore
from exchange.federation.sql_replay import SqlReplayCache
from exchange.federation.targets import FORWARDABLE, Forwardable, RegionCache, target_region_header
from exchange.federation.transport import PeerAuthenticator, load_node_credentials, node_verifier
from signing.node_certs import NodeCredentials
from zhida.errors import ZhidaError

__all__ = ["DEFAULT_DEADLINE_SECONDS", "Federation", "attached", "federation_for"]

_FEDERATIONS: weakref.WeakKeyDictionary[object, Federation] = weakref.WeakKeyDictionary()


def attached(runtime: object) -> Federation | None:
    """The :class:`Federation` opened for ``runtime`` by :func:`federation_for`, if any."""
    return _FEDERATIONS.get(runtime)


def federation_for(runtime: Any) -> Federation | None:
    """Open (once per runtime) the node's Federation; None when federation is not configured."""
    found = _FEDERATIONS.get(runtime)
    if found is None:
        found = Federation.open(runtime)
        if found is not None:
            _FEDERATIONS[runtime] = found
    return found


class Federation(UnaryForwarding, StreamForwarding):
    """One node's federation machinery; see the module docstring."""

    def __init__(
        self,
        runtime: Any,
        credentials: NodeCredentials,
        *,
        replay: ReplayCache | None = None,
        idempotency: IdempotencyStore | None = None,
    ) -> None:
        config = runtime.config
        self.runtime = runtime
        self.config = config
        self.region: str = config.node.region_code
        self.router = Router(
            Topology.from_config(config), hop_reserve_ms=config.federation.hop_reserve_ms
        )
        self.credentials = credentials
        self.signer = NodeSigner(credentials)
        self.nodes = node_verifier(credentials)
        self.peers = PeerAuthenticator(self.nodes)
        # "is None", not "or": an empty store has len() 0 and is falsy
        replay = InMemoryReplayCache() if replay is None else replay
        self.custody = CustodyVerifier(self.nodes, self.region, replay)
        self.idempotency: IdempotencyStore = (
            InMemoryIdempotencyStore(max_entries=10_000) if idempotency is None else idempotency
        )
        self.local = LocalHandlers()
        self.serving = ServingNode(self.region, self.local, self.idempotency)
        repo = SqlCatalogRepository(runtime.database)

        def resource_region(code: str) -> str | None:
            resource = repo.get_resource(code)
            return None if resource is None else resource.region_code

        self.resources = RegionCache(resource_region)
        # where a FetchLicences goes without x-zhida-target-region: the licence index
        # (FetchLicencesRequest -> region code, or None: served here)
        self.licences = LicenceLocator(
            runtime, self.region, parent=config.federation.parent, channel=self.channel
        )
        self.licence_region: Callable[[Any], Awaitable[str | None]] | None = (
            self.licences.region_for
        )
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, Any] = {}

    @classmethod
    def open(cls, runtime: Any) -> Federation | None:
        """The node's Federation, or None when ``[federation]`` names no listener and no
        neighbour. ConfigError (``federation.tls_cert``) when the node TLS files are unusable."""
        fed = runtime.config.federation
        if not (fed.listen or fed.parent or fed.children or fed.shortcuts):
            return None
        return cls(
            runtime,
            load_node_credentials(runtime.config),
            replay=SqlReplayCache(runtime.database),  # shared by all workers, kept on restart
            idempotency=SqlIdempotencyStore(runtime.database),
        )

    # -- the interceptor hook ----------------------------------------------------------------
    def route(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> Behaviour | None:
        """The interceptor hook: a forwarding behaviour for a forwardable unary method."""
        spec = FORWARDABLE.get(method)
        if spec is not None and spec.streaming:
            return self._route_stream(spec, handler)
        inner = handler.unary_unary
        if spec is None or inner is None:
            return None

        async def behaviour(request: Any, context: Any) -> Any:
            metadata = context.invocation_metadata()
            target_region = await self._target_region(spec, request, metadata)
            if target_region is None or target_region == self.region:
                return await inner(request, context)
            try:
                local = self.router.route(target_region).kind is RouteKind.LOCAL
            except ZhidaError:
                local = False  # originate refuses it again, and records the refusal
            if local:
                return await inner(request, context)
            return await self.originate(spec, request, context, target_region)

        return behaviour

    def _route_stream(
        self, spec: Forwardable, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> Behaviour | None:
        """The interceptor hook for a server-streaming method: an async generator function."""
        inner = handler.unary_stream
        if inner is None:
            return None

        async def behaviour(request: Any, context: Any) -> AsyncIterator[Any]:
            target_region = await self._target_region(spec, request, context.invocation_metadata())
            if target_region is not None and target_region != self.region:
                try:
                    local = self.router.route(target_region).kind is RouteKind.LOCAL
                except ZhidaError:
                    local = False  # originate_stream refuses it again, and records the refusal
                if not local:
                    async for response in self.originate_stream(
                        spec, request, context, target_region
                    ):
                        yield response
                    return
            responses = inner(request, context)
            if hasattr(responses, "__aiter__"):
                async for response in responses:
                    yield response
            else:
                for response in responses:
                    yield response

        return behaviour

    async def _target_region(self, spec: Forwardable, request: Any, metadata: Any) -> str | None:
        explicit = target_region_header(metadata)
        if explicit is not None:
            return explicit
        if spec.region_of is not None:
            return spec.region_of(request)
        if not spec.by_catalogue:
            locate = self.licence_region
            if locate is None:
                return None
            return await locate(request)
        code = spec.target(request)
        if not code:
            return None
        hit, region = self.resources.cached(code)
        if hit:
            return region
        found: str | None = await self.runtime.run_blocking(self.resources.region_of, code)
        return found
