"""Forwarding calls between federation nodes (issue 8): the origin, each hop, the serving node.

:class:`Federation` is one node's part of the federation: its
:class:`~exchange.federation.routing.Router`, its
:class:`~exchange.federation.assertion.NodeSigner` (the node certificate's key),
the :class:`~exchange.federation.custody.CustodyVerifier` with the ``jti``
replay cache, the idempotency store, the handlers of the node's own services
(:class:`~exchange.federation.dispatch.LocalHandlers`) and the mTLS channels to
its neighbours (:mod:`exchange.federation.transport`).

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

import asyncio
import logging
import random
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from audit_log.events import Action, Outcome
from catalog_registry.sql import SqlCatalogRepository
from exchange.federation import phases
from exchange.federation.assertion import (
    MAX_LIFETIME_MS,
    AssertionFailure,
    AssertionRejected,
    CallerClaims,
    Custody,
    NodeSigner,
    VerifiedCustody,
)
from exchange.federation.custody import CustodyVerifier
from exchange.federation.dispatch import LocalHandlers
from exchange.federation.idempotency import IdempotencyStore, InMemoryIdempotencyStore
from exchange.federation.licence_routing import LicenceLocator
from exchange.federation.remote import neighbour_error, refuse, retryable
from exchange.federation.replay import InMemoryReplayCache, ReplayCache
from exchange.federation.routing import Plan, RouteKind, Router, Topology
from exchange.federation.serving import ServingNode
from exchange.federation.sql_idempotency import SqlIdempotencyStore
from exchange.federation.sql_replay import SqlReplayCache
from exchange.federation.targets import (
    FORWARDABLE,
    Forwardable,
    RegionCache,
    digest_input,
    header,
    idempotency_header,
    target_region_header,
)
from exchange.federation.transport import (
    PeerAuthenticator,
    load_node_credentials,
    node_verifier,
    open_neighbour_channel,
)
from signing.node_certs import NodeCredentials
from zhida.errors import InvalidArgument, Unauthenticated, ZhidaError
from zhida.federation.v1 import federation_service_pb2 as fpb
from zhida.federation.v1 import federation_service_pb2_grpc as fpb_grpc
from zhida.server.context import DEADLINE, TRACE_ID, current_principal, time_remaining

__all__ = ["DEFAULT_DEADLINE_SECONDS", "Federation", "attached", "federation_for"]

log = logging.getLogger("zhida.federation")

DEFAULT_DEADLINE_SECONDS = 30.0
MAX_ATTEMPTS = 3
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 0.5
TRACE_HEADER = "x-trace-id"
PATH_TRAILER = "x-zhida-path"
REPLAYED_TRAILER = "x-zhida-replayed"

Behaviour = Callable[[Any, Any], Any]  # a coroutine function, or an async generator function

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


def _now_ms() -> int:
    return int(time.time() * 1000)


def _outcome(error: ZhidaError) -> Outcome:
    denied = {"UNAUTHENTICATED", "PERMISSION_DENIED", "FAILED_PRECONDITION", "NOT_FOUND"}
    return Outcome.DENIED if error.code.name in denied else Outcome.ERROR


class Federation:
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

    async def close(self) -> None:
        """Close the neighbour channels."""
        channels, self._channels, self._stubs = list(self._channels.values()), {}, {}
        for channel in channels:
            await channel.close(None)

    def channel(self, address: str) -> grpc.aio.Channel:
        """The mTLS channel to the neighbour at ``address`` (opened in the serving loop)."""
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = open_neighbour_channel(self.config, address)
        return channel

    def _stub(self, address: str) -> Any:
        stub = self._stubs.get(address)
        if stub is None:  # created in the serving loop, on first use
            stub = self._stubs[address] = fpb_grpc.FederationServiceStub(self.channel(address))
        return stub

    # -- the origin --------------------------------------------------------------------------
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

    async def originate(
        self, spec: Forwardable, request: Any, context: Any, target_region: str
    ) -> Any:
        """Send the caller's call towards ``target_region``; its response message."""
        timing = phases.start("origin")
        try:
            return await self._originate(spec, request, context, target_region)
        finally:
            phases.mark("answered")
            phases.finish(timing, TRACE_ID.get())

    async def _originate(
        self, spec: Forwardable, request: Any, context: Any, target_region: str
    ) -> Any:
        principal = current_principal()
        trace_id = TRACE_ID.get()
        data = request.SerializeToString(deterministic=True)
        key = idempotency_header(context.invocation_metadata()) or secrets.token_urlsafe(18)
        remaining = time_remaining()
        now = _now_ms()
        deadline_ms = now + int(
            (DEFAULT_DEADLINE_SECONDS if remaining is None else remaining) * 1000
        )
        claims = CallerClaims.of(
            principal,
            trace_id=trace_id,
            idempotency_key=key,
            target_kind=spec.target_kind,
            target=spec.target(request) or spec.target_kind,
            target_region=target_region,
            request=digest_input(spec.method, data),
            deadline_ms=deadline_ms,
        )
        details = {"federation": "origin", "method": spec.method, "target_region": target_region}
        recorded: asyncio.Future[None] | None = None
        attempt = 0
        try:
            while True:
                attempt += 1
                now = _now_ms()
                plan = self.router.plan(target_region, deadline_ms=deadline_ms, now_ms=now)
                details["next"] = plan.hop.region
                lifetime = min(MAX_LIFETIME_MS, max(1_000, deadline_ms - now + 1_000))
                custody = self.signer.assert_caller(
                    claims, audience=plan.hop.region, lifetime_ms=lifetime
                )
                envelope = fpb.ForwardRequest(
                    method=spec.method,
                    request=data,
                    custody=custody.encode(),
                    target_region=target_region,
                    idempotency_key=key,
                )
                call = self._call(plan, envelope, trace_id)  # sent first: gRPC's task runs next
                if recorded is None:  # then the event, committing while the call travels on
                    recorded = self._audit_soon(spec, claims.target, details)
                phases.mark("signed")
                try:
                    reply = await self._answer(plan, call)
                    phases.mark("reply")
                    break
                except ZhidaError as error:
                    pause = self._backoff(attempt, deadline_ms)
                    if not retryable(error) or pause is None:
                        raise
                    log.info(
                        "forward attempt %d to %s failed (%s); retrying in %.0f ms",
                        attempt, plan.hop.region, error.reason, pause * 1000,
                        extra={"trace_id": trace_id, "reason": error.reason},
                    )  # fmt: skip
                    await asyncio.sleep(pause)
        except ZhidaError as error:
            details["attempts"] = str(attempt)
            if recorded is not None:
                await recorded
            await self._audit(spec, claims.target, details, error=error)
            await refuse(context, error, trace_id, self.region)  # decided here, or further on
            raise
        await recorded
        phases.mark("audited")
        context.set_trailing_metadata(
            (
                (TRACE_HEADER, trace_id),
                (PATH_TRAILER, ",".join(reply.path)),
                (REPLAYED_TRAILER, "1" if reply.replayed else "0"),
            )
        )
        return spec.response_type.FromString(reply.response)

    async def originate_stream(
        self, spec: Forwardable, request: Any, context: Any, target_region: str
    ) -> AsyncIterator[Any]:
        """Open the caller's stream towards ``target_region``; relay its messages one by one.

        The client's deadline, if it set one, is the stream's (less ``hop_reserve_ms``
        per hop); without one the stream lasts until either side ends it, and the
        assertion's ``deadline_ms`` (30 s) only bounds the time the stream may take
        to reach the serving node. No retry: a read stream is resumed by the client
        from its cursor. The assertion's idempotency key names the stream; nothing
        is stored under it.
        """
        principal = current_principal()
        trace_id = TRACE_ID.get()
        data = request.SerializeToString(deterministic=True)
        remaining = context.time_remaining()
        now = _now_ms()
        budget_s = DEFAULT_DEADLINE_SECONDS if remaining is None else remaining
        deadline_ms = now + int(budget_s * 1000)
        claims = CallerClaims.of(
            principal,
            trace_id=trace_id,
            idempotency_key="stream-" + secrets.token_urlsafe(12),
            target_kind=spec.target_kind,
            target=spec.target(request) or spec.target_kind,
            target_region=target_region,
            request=digest_input(spec.method, data),
            deadline_ms=deadline_ms,
        )
        details = {
            "federation": "origin",
            "method": spec.method,
            "target_region": target_region,
            "stream": "true",
        }
        recorded: asyncio.Future[None] | None = None
        try:
            plan = self.router.plan(target_region, deadline_ms=deadline_ms, now_ms=now)
            details["next"] = plan.hop.region
            lifetime = min(MAX_LIFETIME_MS, max(1_000, deadline_ms - now + 1_000))
            custody = self.signer.assert_caller(
                claims, audience=plan.hop.region, lifetime_ms=lifetime
            )
            envelope = fpb.ForwardStreamRequest(
                method=spec.method,
                request=data,
                custody=custody.encode(),
                target_region=target_region,
            )
            recorded = self._audit_soon(spec, claims.target, details)
            timeout = None if remaining is None else plan.timeout_seconds
            async for message in self._relay(plan, envelope, trace_id, timeout, context):
                if recorded is not None:  # committed before the caller sees data
                    await recorded
                    recorded = None
                yield spec.response_type.FromString(message)
        except ZhidaError as error:
            if recorded is not None:
                await recorded
            await self._audit(spec, claims.target, details, error=error)
            await refuse(context, error, trace_id, self.region)  # decided here, or further on
            raise
        if recorded is not None:
            await recorded

    async def _relay(
        self,
        plan: Plan,
        envelope: fpb.ForwardStreamRequest,
        trace_id: str,
        timeout: float | None,
        context: Any,
    ) -> AsyncIterator[bytes]:
        """``ForwardStream`` to the next hop; its messages' bytes, one at a time.

        The path the serving node announces (``x-zhida-path`` initial metadata) is
        passed on to ``context``'s caller. Nothing is read ahead: the next message
        is asked of the neighbour when the caller has taken this one, so gRPC flow
        control reaches the serving node. However this generator ends — finished,
        failed, or closed because the caller went away — the upstream call is
        cancelled (a no-op once it is over), so the serving node stops reading.
        """
        address = plan.hop.address or ""
        call = self._stub(address).ForwardStream(
            envelope,
            timeout=None if timeout is None else max(timeout, 0.001),
            metadata=((TRACE_HEADER, trace_id),),
        )
        try:
            path = header(await call.initial_metadata(), PATH_TRAILER)
            if path:
                await context.send_initial_metadata(((PATH_TRAILER, path),))
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:  # type: ignore[attr-defined]
                    break
                yield message.response
        except grpc.aio.AioRpcError as error:
            raise neighbour_error(error, plan.hop.region, address) from None
        finally:
            call.cancel()

    def _backoff(self, attempt: int, deadline_ms: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; None when no retry fits."""
        if attempt >= MAX_ATTEMPTS:
            return None
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
        pause = random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret
        left_ms = deadline_ms - _now_ms() - pause * 1000
        if left_ms < self.router.hop_reserve_ms + self.router.min_budget_ms:
            return None
        return pause

    def _call(self, plan: Plan, envelope: fpb.ForwardRequest, trace_id: str) -> Any:
        """Start ``Forward`` to the next hop: gRPC schedules its sending task at once, so
        work started after this (the node's audit event: building, encoding, waking the
        sequencer's thread) runs while the request is on its way, not before it leaves."""
        return self._stub(plan.hop.address or "").Forward(
            envelope,
            timeout=max(plan.timeout_seconds, 0.001),
            metadata=((TRACE_HEADER, trace_id),),
        )

    async def _answer(self, plan: Plan, call: Any) -> Any:
        """The next hop's reply to ``call``; its failure as :func:`neighbour_error`."""
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            raise neighbour_error(error, plan.hop.region, plan.hop.address or "") from None

    # -- the Forward RPC -----------------------------------------------------------------------
    async def handle(self, envelope: fpb.ForwardRequest, context: Any) -> fpb.ForwardResponse:
        """Serve one ``Forward`` call (see the module docstring)."""
        received_ms = _now_ms()
        timing = phases.start("forward")
        try:
            return await self._handle(envelope, context, received_ms)
        finally:
            phases.mark("answered")
            phases.finish(timing, TRACE_ID.get())

    async def _handle(
        self, envelope: fpb.ForwardRequest, context: Any, received_ms: int
    ) -> fpb.ForwardResponse:
        peer = self.peers.identity(context)
        if peer is None:
            raise Unauthenticated(
                "Forward is served on the federation's mutual-TLS port only",
                reason="NODE_CERT_REQUIRED",
            )
        details = {"federation": "forward", "method": envelope.method, "peer": peer.region_code}
        verified: VerifiedCustody | None = None
        spec: Forwardable | None = None
        recorded: list[asyncio.Future[None]] = []  # this node's event, once it is started
        try:
            spec = FORWARDABLE.get(envelope.method)
            if spec is None or spec.streaming:
                raise InvalidArgument(
                    f"{envelope.method!r} is not forwarded between nodes as a unary call",
                    reason="METHOD_NOT_FORWARDABLE",
                )
            custody = Custody.decode(envelope.custody)
            verified = await self.runtime.run_blocking(  # signatures; the replay row
                self.custody.verify,
                custody,
                digest_input(envelope.method, envelope.request),
                peer=peer.region_code,
            )
            phases.mark("verified")
            claims = verified.claims
            TRACE_ID.set(claims.trace_id)
            details.update(target_region=claims.target_region, path="→".join(verified.path))
            self._check_envelope(envelope, spec, verified)
            now = _now_ms()
            plan = self.router.plan(
                claims.target_region,
                deadline_ms=verified.deadline_ms,
                now_ms=now,
                path=verified.path,
            )
            deadline = time.monotonic() + (plan.deadline_ms - now) / 1000
            current = DEADLINE.get()
            DEADLINE.set(deadline if current is None else min(current, deadline))
            if plan.hop.kind is RouteKind.LOCAL:
                details["federation"] = "serve"
                served = verified

                def claimed(replayed: bool) -> None:  # the event commits while the call runs
                    details["replayed"] = str(replayed).lower()
                    recorded.append(self._audit_soon(spec, claims.target, details, served))

                reply = await self.serving.serve(
                    spec, envelope, verified, deadline_ms=plan.deadline_ms, on_claim=claimed
                )
            else:
                details["next"] = plan.hop.region
                onward = self.signer.forward(
                    verified,
                    audience=plan.hop.region,
                    deadline_ms=plan.deadline_ms,
                    received_ms=received_ms,
                )
                call = self._call(
                    plan,
                    fpb.ForwardRequest(
                        method=envelope.method,
                        request=envelope.request,
                        custody=onward.encode(),
                        target_region=envelope.target_region,
                        idempotency_key=envelope.idempotency_key,
                    ),
                    claims.trace_id,
                )  # on its way first; the event commits meanwhile
                recorded.append(self._audit_soon(spec, claims.target, details, verified))
                phases.mark("signed")
                reply = await self._answer(plan, call)
            phases.mark("reply")
        except ZhidaError as error:
            if isinstance(error, AssertionRejected):
                details["failure"] = error.failure.value
            target = verified.claims.target if verified is not None else None
            for started in recorded:
                await started
            await self._audit(spec, target, details, error=error, verified=verified)
            await refuse(context, error, TRACE_ID.get(), self._decided_at(verified, peer))
            raise
        if recorded:
            for started in recorded:
                await started
            phases.mark("audited")
        else:  # not expected: serve() settles the claim before it answers
            await self._audit(spec, verified.claims.target, details, verified=verified)
        return reply

    # -- the ForwardStream RPC ----------------------------------------------------------------
    async def handle_stream(
        self, envelope: fpb.ForwardStreamRequest, context: Any
    ) -> AsyncIterator[fpb.ForwardStreamResponse]:
        """Serve one ``ForwardStream`` call: the checks of :meth:`handle`, then relay or serve.

        Per hop: the mTLS peer, the custody chain (signatures, links, digest of method
        and request, audience, sender, deadline, ``jti`` replay), the envelope against
        the assertion, the route with the custody path; one ``data.request`` event
        (``details.stream = true``) with the shared trace id, and a second one when the
        stream fails. The serving node announces the path in the initial metadata.
        """
        received_ms = _now_ms()
        peer = self.peers.identity(context)
        if peer is None:
            raise Unauthenticated(
                "ForwardStream is served on the federation's mutual-TLS port only",
                reason="NODE_CERT_REQUIRED",
            )
        details = {
            "federation": "forward",
            "method": envelope.method,
            "peer": peer.region_code,
            "stream": "true",
        }
        verified: VerifiedCustody | None = None
        spec: Forwardable | None = None
        recorded: asyncio.Future[None] | None = None
        try:
            spec = FORWARDABLE.get(envelope.method)
            if spec is None or not spec.streaming:
                raise InvalidArgument(
                    f"{envelope.method!r} is not forwarded between nodes as a stream",
                    reason="METHOD_NOT_FORWARDABLE",
                )
            custody = Custody.decode(envelope.custody)
            verified = await self.runtime.run_blocking(
                self.custody.verify,
                custody,
                digest_input(envelope.method, envelope.request),
                peer=peer.region_code,
            )
            claims = verified.claims
            TRACE_ID.set(claims.trace_id)
            details.update(target_region=claims.target_region, path="→".join(verified.path))
            if (
                envelope.target_region != claims.target_region
                or spec.target_kind != claims.target_kind
            ):
                raise AssertionRejected(
                    AssertionFailure.DIGEST_MISMATCH,
                    "the ForwardStream envelope differs from the signed assertion",
                )
            now = _now_ms()
            plan = self.router.plan(
                claims.target_region,
                deadline_ms=verified.deadline_ms,
                now_ms=now,
                path=verified.path,
            )
            stream: AsyncIterator[bytes]
            if plan.hop.kind is RouteKind.LOCAL:
                details["federation"] = "serve"
                recorded = self._audit_soon(spec, claims.target, details, verified)
                path = ",".join([*verified.path, self.region])
                await context.send_initial_metadata(((PATH_TRAILER, path),))
                stream = self.serving.serve_stream(spec, envelope, verified)
            else:
                details["next"] = plan.hop.region
                onward = self.signer.forward(
                    verified,
                    audience=plan.hop.region,
                    deadline_ms=plan.deadline_ms,
                    received_ms=received_ms,
                )
                recorded = self._audit_soon(spec, claims.target, details, verified)
                remaining = context.time_remaining()
                timeout = (
                    None if remaining is None else remaining - self.router.hop_reserve_ms / 1000
                )
                stream = self._relay(
                    plan,
                    fpb.ForwardStreamRequest(
                        method=envelope.method,
                        request=envelope.request,
                        custody=onward.encode(),
                        target_region=envelope.target_region,
                    ),
                    claims.trace_id,
                    timeout,
                    context,
                )
            async for data in stream:
                if recorded is not None:  # committed before the first message leaves
                    await recorded
                    recorded = None
                yield fpb.ForwardStreamResponse(response=data)
        except ZhidaError as error:
            if isinstance(error, AssertionRejected):
                details["failure"] = error.failure.value
            target = verified.claims.target if verified is not None else None
            if recorded is not None:
                await recorded
            await self._audit(spec, target, details, error=error, verified=verified)
            await refuse(context, error, TRACE_ID.get(), self._decided_at(verified, peer))
            raise
        if recorded is not None:
            await recorded

    def _decided_at(self, verified: VerifiedCustody | None, peer: Any) -> str:
        """The ``x-zhida-path`` of a call this node ends: the verified path and this node;
        before the custody is verified, only what the mTLS handshake proved (the peer)."""
        if verified is not None:
            return ",".join([*verified.path, self.region])
        return ",".join([peer.region_code, self.region])

    def _check_envelope(
        self, envelope: fpb.ForwardRequest, spec: Forwardable, verified: VerifiedCustody
    ) -> None:
        claims = verified.claims
        if (
            envelope.target_region != claims.target_region
            or envelope.idempotency_key != claims.idempotency_key
            or spec.target_kind != claims.target_kind
        ):
            raise AssertionRejected(
                AssertionFailure.DIGEST_MISMATCH,
                "the Forward envelope differs from the signed assertion",
            )

    # -- audit -------------------------------------------------------------------------------
    def _audit_soon(
        self,
        spec: Forwardable | None,
        target: str | None,
        details: dict[str, str],
        verified: VerifiedCustody | None = None,
    ) -> asyncio.Future[None]:
        """Start this node's ``data.request`` event now (a copy of ``details``): its group
        commit runs while the call travels on; the caller awaits it before answering."""
        return asyncio.ensure_future(self._audit(spec, target, dict(details), verified=verified))

    async def _audit(
        self,
        spec: Forwardable | None,
        target: str | None,
        details: dict[str, str],
        *,
        error: ZhidaError | None = None,
        verified: VerifiedCustody | None = None,
    ) -> None:
        """One ``data.request`` event for this node's part in a forwarded call."""
        principal = verified.principal() if verified is not None else None
        resource = target if spec is not None and spec.target_kind == "resource" else None
        try:
            if error is None:
                await self.runtime.recorder.record(
                    Action.DATA_REQUEST, principal=principal, resource=resource, details=details
                )
            else:
                await self.runtime.recorder.record(
                    Action.DATA_REQUEST,
                    outcome=_outcome(error),
                    reason=error.reason,
                    principal=principal,
                    resource=resource,
                    details=details,
                )
        except Exception:
            # the answer stands even if it cannot be recorded; the operator must know
            log.exception("could not record a forwarded call in the audit log")
