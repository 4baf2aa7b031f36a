"""The unary forwarding path (issue 8): the origin with its retries, each ``Forward`` hop.

:class:`UnaryForwarding` is the part of :class:`~exchange.federation.forwarder.Federation`
that carries a unary call (``RequestData``, ``ApplyForData``, ``FetchLicences`` ...).

**At the origin** (:meth:`UnaryForwarding.originate`): the caller's assertion
(trace id, the client's ``x-idempotency-key`` or a fresh one, target, digest
of method + request, the deadline — ``DEFAULT_DEADLINE_SECONDS`` when the
client set none) is signed for the next hop and ``Forward`` is called with the
deadline less ``hop_reserve_ms``. A retryable failure is tried again while the
budget allows (:mod:`~exchange.federation.forward_retry`), each time with a
fresh assertion (new ``jti``) and the same idempotency key. The inner response
comes back as the method's response, with the trailers ``x-zhida-path`` and
``x-zhida-replayed``; the neighbour's error status comes back unchanged.

**At every other node** (:meth:`UnaryForwarding.handle`, the ``Forward`` RPC):
the mTLS peer, the custody chain verified for this node with the peer as
sender, the envelope against the assertion, trace id and deadline from the
verified chain, the route planned with the custody path; then the call is
passed on with this node's hop record, or served
(:meth:`~exchange.federation.serving.ServingNode.serve`).

A node's ``data.request`` event (:mod:`~exchange.federation.forward_audit`) is
started right after the call to the next hop (or, serving, once the
idempotency store has decided), so it commits while the call travels on.

Example::

    reply = await federation.originate(spec, request, context, "420000")   # at the origin
    answer = await federation.handle(envelope, context)                    # Forward, per hop
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import grpc

from exchange.federation import phases
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
    REPLAYED_TRAILER,
    TRACE_HEADER,
    ForwardingBase,
    now_ms,
)
from exchange.federation.forward_retry import backoff
from exchange.federation.remote import neighbour_error, refuse, retryable
from exchange.federation.routing import Plan, RouteKind
from exchange.federation.targets import FORWARDABLE, Forwardable, digest_input, idempotency_header
from zhida.errors import InvalidArgument, Unauthenticated, ZhidaError
from zhida.federation.v1 import federation_service_pb2 as fpb
from zhida.server.context import DEADLINE, TRACE_ID, current_principal, time_remaining

__all__ = ["UnaryForwarding"]

log = logging.getLogger("zhida.federation")


class UnaryForwarding(ForwardingBase):
    """Forwarding a unary call: the origin (:meth:`originate`), each hop (:meth:`handle`)."""

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
        now = now_ms()
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
                now = now_ms()
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
                    recorded = audit_soon(self.runtime, spec, claims.target, details)
                phases.mark("signed")
                try:
                    reply = await self._answer(plan, call)
                    phases.mark("reply")
                    break
                except ZhidaError as error:
                    pause = backoff(attempt, deadline_ms, self.router)
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
            await audit(self.runtime, spec, claims.target, details, error=error)
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
        received_ms = now_ms()
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
            now = now_ms()
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
                    recorded.append(audit_soon(self.runtime, spec, claims.target, details, served))

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
                recorded.append(audit_soon(self.runtime, spec, claims.target, details, verified))
                phases.mark("signed")
                reply = await self._answer(plan, call)
            phases.mark("reply")
        except ZhidaError as error:
            if isinstance(error, AssertionRejected):
                details["failure"] = error.failure.value
            target = verified.claims.target if verified is not None else None
            for started in recorded:
                await started
            await audit(self.runtime, spec, target, details, error=error, verified=verified)
            await refuse(context, error, TRACE_ID.get(), self._decided_at(verified, peer))
            raise
        if recorded:
            for started in recorded:
                await started
            phases.mark("audited")
        else:  # not expected: serve() settles the claim before it answers
            await audit(self.runtime, spec, verified.claims.target, details, verified=verified)
        return reply

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
