"""The streaming forwarding path (issue 8): ``ForwardStream``, from the origin to the server.

:class:`StreamForwarding` is the part of :class:`~exchange.federation.forwarder.Federation`
that carries a server-streaming call (``StreamDataset``, ``ReceiveChanges``:
:attr:`~exchange.federation.targets.Forwardable.streaming`) the same way as a
unary one: :meth:`StreamForwarding.originate_stream` at the origin,
:meth:`StreamForwarding.handle_stream` at every other node — every check of
the unary ``Forward`` per hop, then relay (:meth:`StreamForwarding._relay`) or
serve (:meth:`~exchange.federation.serving.ServingNode.serve_stream`).

Messages are relayed one at a time under gRPC flow control; whatever ends a
hop's stream (done, failed, its caller cancelled) cancels the upstream call, so
a client that cancels ends the stream at the serving node. No idempotency store
and no retry: a stream is a read, resumed by the client from its cursor. The
serving node announces the path in the ``x-zhida-path`` initial metadata. A
node's ``data.request`` event (``details.stream = true``) is committed before
the first message leaves it.

Example::

    async for message in federation.originate_stream(spec, request, context, "100000"):
        yield message                                       # at the origin
    async for response in federation.handle_stream(envelope, context):
        yield response                                      # ForwardStream, per hop
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc

from exchange.federation.assertion import (
    MAX_LIFETIME_MS,
    AssertionFailure,
    AssertionRejected,
    CallerClaims,
    Custody,
    VerifiedCustody,
)
from exchange.federation.forward_audit import audit, audit_soon
from exchange.federation.forward_base import (
    DEFAULT_DEADLINE_SECONDS,
    PATH_TRAILER,
    TRACE_HEADER,
    ForwardingBase,
    now_ms,
)
from exchange.federation.remote import neighbour_error, refuse
from exchange.federation.routing import Plan, RouteKind
from exchange.federation.targets import FORWARDABLE, Forwardable, digest_input, header
from zhida.errors import InvalidArgument, Unauthenticated, ZhidaError
from zhida.federation.v1 import federation_service_pb2 as fpb
from zhida.server.context import TRACE_ID, current_principal

__all__ = ["StreamForwarding"]


class StreamForwarding(ForwardingBase):
    """Forwarding a server stream: the origin (:meth:`originate_stream`), each hop
    (:meth:`handle_stream`), the relay from the next hop (:meth:`_relay`)."""

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
        now = now_ms()
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
            recorded = audit_soon(self.runtime, spec, claims.target, details)
            timeout = None if remaining is None else plan.timeout_seconds
            async for message in self._relay(plan, envelope, trace_id, timeout, context):
                if recorded is not None:  # committed before the caller sees data
                    await recorded
                    recorded = None
                yield spec.response_type.FromString(message)
        except ZhidaError as error:
            if recorded is not None:
                await recorded
            await audit(self.runtime, spec, claims.target, details, error=error)
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
        received_ms = now_ms()
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
            now = now_ms()
            plan = self.router.plan(
                claims.target_region,
                deadline_ms=verified.deadline_ms,
                now_ms=now,
                path=verified.path,
            )
            stream: AsyncIterator[bytes]
            if plan.hop.kind is RouteKind.LOCAL:
                details["federation"] = "serve"
                recorded = audit_soon(self.runtime, spec, claims.target, details, verified)
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
                recorded = audit_soon(self.runtime, spec, claims.target, details, verified)
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
            await audit(self.runtime, spec, target, details, error=error, verified=verified)
            await refuse(context, error, TRACE_ID.get(), self._decided_at(verified, peer))
            raise
        if recorded is not None:
            await recorded
