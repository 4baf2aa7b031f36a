"""The node a forwarded call is for: the caller's policy, at most once, in-process (issue 8).

:class:`ServingNode` runs the inner call of a verified ``Forward`` envelope
whose target region is this node's:

1. the original caller's :class:`~zhida.auth.principal.Principal` comes from the
   verified custody (:meth:`VerifiedCustody.principal`), and this node's
   policy table must admit it for the inner method (PERMISSION_DENIED
   otherwise) — the origin's check is not taken on trust;
2. the idempotency store is asked under :func:`~exchange.federation.idempotency.scoped_key`
   (origin, organisation, subject, key): a key already answered returns the
   stored response (``replayed``); one still running answers ABORTED
   ``IDEMPOTENT_REQUEST_IN_PROGRESS`` (the origin retries); the same key for
   another request is INVALID_ARGUMENT ``IDEMPOTENCY_KEY_REUSED``;
3. otherwise the call runs in-process (:class:`~exchange.federation.dispatch.LocalHandlers`),
   shielded from cancellation: if the Forward call is cancelled (deadline,
   lost connection) the inner call still finishes and its response is
   stored, so a retry is answered from the store instead of running twice.
   A failed call releases the key (it changed nothing; a retry may run).

A forwarded **stream** (``ForwardStream``: StreamDataset, ReceiveChanges) is
served by :meth:`ServingNode.serve_stream`: the same policy check for the
asserted caller, then the servicer's own generator in-process, message by
message. There is no idempotency store for a stream: it reads and changes
nothing (its delivery record is written by the service as for a direct
call), so a retried stream simply reads again; not shielded either — a
cancelled stream ends the handler's generator (and its provider read).

The lease is the remaining deadline plus ``LEASE_MARGIN_SECONDS``: a crashed
attempt does not block its key for longer. This is the async form of
:func:`~exchange.federation.idempotency.run_once`; the store's calls (a
database transaction each with :class:`~exchange.federation.sql_idempotency.SqlIdempotencyStore`)
run in a worker thread, and the answer is stored before it is returned.

Example::

    serving = ServingNode("420000", local_handlers, InMemoryIdempotencyStore())
    reply = await serving.serve(spec, envelope, verified, deadline_ms=plan.deadline_ms)
    reply.replayed, list(reply.path)          # False, ['420102', '420100', '420000']
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from exchange.federation import phases
from exchange.federation.assertion import VerifiedCustody
from exchange.federation.dispatch import LocalHandlers
from exchange.federation.idempotency import ClaimState, IdempotencyStore, scoped_key
from exchange.federation.targets import Forwardable
from zhida.auth.policy import authorize
from zhida.auth.principal import Principal
from zhida.errors import Aborted, ZhidaError
from zhida.federation.v1 import federation_service_pb2 as fpb
from zhida.server.context import DEADLINE

__all__ = ["IDEMPOTENCY_TTL_SECONDS", "LEASE_MARGIN_SECONDS", "ServingNode"]

log = logging.getLogger("zhida.federation")

IDEMPOTENCY_TTL_SECONDS = 3600.0
LEASE_MARGIN_SECONDS = 30.0


class ServingNode:
    """Serves forwarded calls addressed to ``region``; see the module docstring."""

    def __init__(self, region: str, local: LocalHandlers, idempotency: IdempotencyStore) -> None:
        self.region = region
        self.local = local
        self.idempotency = idempotency
        self._running: set[asyncio.Future[tuple[bytes, bool]]] = set()

    async def serve(
        self,
        spec: Forwardable,
        envelope: fpb.ForwardRequest,
        verified: VerifiedCustody,
        *,
        deadline_ms: int,
        on_claim: Callable[[bool], None] | None = None,
    ) -> fpb.ForwardResponse:
        """Answer ``envelope`` (verified as ``verified``) for the caller it carries.

        ``on_claim(replayed)`` is called once the idempotency store has decided —
        before the call runs (False) or with the stored answer (True) — so the
        forwarder can start writing its audit event while the call runs.
        """
        principal = verified.principal()
        authorize(spec.method, principal)
        claims = verified.claims
        path = [*verified.path, self.region]
        key = scoped_key(
            verified.origin, principal.organisation, principal.subject, claims.idempotency_key
        )
        remaining = max(0.0, deadline_ms / 1000 - time.time())
        task = asyncio.ensure_future(
            self._at_most_once(
                key,
                claims.request_digest,
                remaining + LEASE_MARGIN_SECONDS,
                spec,
                envelope,
                principal,
                claims.trace_id,
                on_claim,
            )
        )
        self._running.add(task)

        def forget(done: asyncio.Future[tuple[bytes, bool]]) -> None:
            self._running.discard(done)
            if not done.cancelled():
                done.exception()  # retrieved: a cancelled Forward does not log it again

        task.add_done_callback(forget)
        response, replayed = await asyncio.shield(task)
        return fpb.ForwardResponse(response=response, path=path, replayed=replayed)

    async def serve_stream(
        self, spec: Forwardable, envelope: fpb.ForwardStreamRequest, verified: VerifiedCustody
    ) -> AsyncIterator[bytes]:
        """The inner stream of ``envelope`` for the caller ``verified`` carries: response bytes.

        PERMISSION_DENIED (this node's policy) before anything runs; then the
        servicer's messages one at a time (see the module docstring).
        """
        principal = verified.principal()
        authorize(spec.method, principal)
        stream: AsyncGenerator[bytes] = self.local.stream(
            spec.method,
            envelope.request,
            principal=principal,
            trace_id=verified.claims.trace_id,
            deadline=DEADLINE.get(),
        )
        try:
            async for data in stream:
                yield data
        finally:
            await stream.aclose()

    async def _at_most_once(
        self,
        key: str,
        request_digest: str,
        lease_seconds: float,
        spec: Forwardable,
        envelope: fpb.ForwardRequest,
        principal: Principal,
        trace_id: str,
        on_claim: Callable[[bool], None] | None = None,
    ) -> tuple[bytes, bool]:
        """Claim, run, store — shielded as one: a cancelled Forward neither strands a claim
        nor loses an answer. The response and whether it came from the store."""
        claim = await asyncio.to_thread(
            self.idempotency.begin,
            key,
            request_digest,
            ttl_seconds=IDEMPOTENCY_TTL_SECONDS,
            lease_seconds=lease_seconds,
        )
        phases.mark("claimed")
        if claim.state is ClaimState.DONE:
            if on_claim is not None:
                on_claim(True)
            return claim.response or b"", True
        if claim.state is ClaimState.IN_PROGRESS:
            raise Aborted(
                "an earlier attempt of this request is still running; retry later",
                reason="IDEMPOTENT_REQUEST_IN_PROGRESS",
            )
        try:
            if on_claim is not None:
                on_claim(False)
            response = await self.local.call(
                spec.method,
                envelope.request,
                principal=principal,
                trace_id=trace_id,
                deadline=DEADLINE.get(),
            )
            phases.mark("called")
        except BaseException:
            await self._settle(trace_id, self.idempotency.abandon, key)
            raise
        await self._settle(trace_id, self.idempotency.complete, key, response)
        phases.mark("completed")
        return response, False

    @staticmethod
    async def _settle(trace_id: str, settle: Callable[..., None], *args: object) -> None:
        """Store the answer or release the key; a failure is logged, the answer stands."""
        try:
            await asyncio.to_thread(settle, *args)
        except ZhidaError:
            log.exception("could not settle the idempotency key of trace %s", trace_id)
