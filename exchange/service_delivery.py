"""Delivery RPCs of ``zhida.exchange.v1.ExchangeService``: DeliveryHandlers.

* ``RequestData`` / ``StreamDataset`` — :class:`~exchange.delivery.Deliverer`:
  grant admitted, provider asked, records minimised, delivery recorded and
  audited (``data.request`` and ``data.release``, once per call or stream).
  ``StreamDataset`` is an async generator: gRPC asks for the next batch only
  when the client has taken the previous one (back-pressure), and one batch
  is read ahead at most.
* ``CreateSubscription`` / ``ListSubscriptions`` / ``CancelSubscription`` /
  ``AcknowledgeChanges`` — :class:`~exchange.subscriptions.Subscriptions`;
  ``ReceiveChanges`` streams a subscription's changes from the cursor given or
  the acknowledged one, minimised like any delivery (ids are ``<region>-<hex>``: on a
  federation node the forwarder sends these calls to the node holding the
  subscription, and StreamDataset / CreateSubscription to the resource's node —
  ``exchange/federation/targets.py``); with ``follow`` the stream
  stays open and new hosted changes arrive as they are uploaded (at once in
  this process, within a quarter second from other workers).
* ``UploadDataset`` — :class:`~exchange.subscriptions.HostedUploads`: a header,
  then the file in chunks (at most :data:`MAX_UPLOAD_BYTES`); all or nothing.
  Uploads (``data.upload``) and subscriptions created or cancelled
  (``subscription.*``) are audit events, refusals too.
* ``ListDeliveries`` — the requester's deliveries; an admin also sees those of
  its organisation's resources; an auditor sees all. Newest first.

Providers: ``""``/``"hosted"`` in a resource's ``delivery_service`` is the
hosted provider; other names come from ``[exchange] providers``.

Example::

    class ExchangeService(RequestHandlers, DeliveryHandlers, pb_grpc.ExchangeServiceServicer):
        def __init__(self, runtime: NodeRuntime) -> None:
            self.ctx = ExchangeContext.open(runtime)
            DeliveryHandlers.__init__(self, self.ctx)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from audit_log.events import Action, Outcome
from exchange.context import ExchangeContext
from exchange.delivery import (
    DEFAULT_PAGE,
    MAX_PAGE,
    Deliverer,
    DeliveryBook,
    bounded,
    canonical_code,
)
from exchange.delivery_sql import (
    Delivery,
    DeliveryStore,
    Subscription,
    SubscriptionStore,
    Visibility,
)
from exchange.hosted_sql import SqlHostedStore
from exchange.provider import HostedProvider, ProviderDirectory, parse_cursor
from exchange.provider_client import NodeToken, RemoteProvider
from exchange.subscriptions import HostedUploads, Subscriptions
from zhida.auth.principal import Principal, Role
from zhida.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.server.context import current_principal

MAX_UPLOAD_BYTES = 256 * 1024 * 1024
T = TypeVar("T")
_KINDS = {
    "query": pb.DELIVERY_KIND_QUERY,
    "stream": pb.DELIVERY_KIND_STREAM,
    "subscription": pb.DELIVERY_KIND_SUBSCRIPTION,
}


def subscription_to_pb(sub: Subscription) -> pb.Subscription:
    msg = pb.Subscription(
        id=sub.id, subscriber_org=sub.subscriber_org, resource_code=sub.resource_code,
        grant_id=sub.grant_id, acknowledged_cursor=sub.acknowledged_cursor,
        cancelled=sub.cancelled_at is not None,
    )  # fmt: skip
    msg.created_at.FromDatetime(sub.created_at)
    return msg


def delivery_to_pb(d: Delivery) -> pb.Delivery:
    msg = pb.Delivery(
        id=d.id, kind=_KINDS.get(d.kind, pb.DELIVERY_KIND_UNSPECIFIED),
        requester_org=d.requester_org, requester_subject=d.requester_subject,
        provider_org=d.provider_org, resource_code=d.resource_code, grant_id=d.grant_id,
        items=d.items, record_count=d.record_count, purpose=d.purpose, trace_id=d.trace_id,
    )  # fmt: skip
    msg.delivered_at.FromDatetime(d.delivered_at)
    return msg


def visibility(principal: Principal) -> Visibility:
    if principal.role is Role.AUDITOR:
        return Visibility(None)
    return Visibility(principal.organisation, provider_too=principal.role is Role.ADMIN)


class DeliveryHandlers:
    """RequestData, StreamDataset, subscriptions, hosted uploads, delivery records."""

    def __init__(self, ctx: ExchangeContext) -> None:
        self.ctx = ctx
        runtime = ctx.runtime
        config = runtime.config
        store = SqlHostedStore(runtime.database)
        self.hosted = HostedProvider(store, runtime.run_blocking)
        token = NodeToken(config)
        remotes = {
            name: RemoteProvider(
                name,
                address,
                token,
                config.exchange.provider_timeout_seconds,
                max_message_bytes=config.node.max_message_bytes,
            )
            for name, address in config.exchange.providers
        }
        self.providers = ProviderDirectory(self.hosted, remotes)
        book = DeliveryBook(DeliveryStore(runtime.database), runtime.executor)
        self.deliverer = Deliverer(ctx, self.providers, book)
        self.subscriptions = Subscriptions(
            SubscriptionStore(runtime.database),
            ctx.grants,
            ctx.clock,
            region=config.node.region_code,  # the id names the node holding it (federation)
        )
        self.uploads = HostedUploads(store, ctx.catalogue.get_resource, ctx.clock)

    async def RequestData(
        self, request: pb.RequestDataRequest, context: Any
    ) -> pb.RequestDataResponse:
        return await self.deliverer.request_data(current_principal(), request)

    async def StreamDataset(
        self, request: pb.StreamDatasetRequest, context: Any
    ) -> AsyncIterator[pb.StreamDatasetResponse]:
        async for batch in self.deliverer.stream_dataset(current_principal(), request):
            yield batch

    # -- subscriptions -----------------------------------------------------------------------
    async def CreateSubscription(
        self, request: pb.CreateSubscriptionRequest, context: Any
    ) -> pb.CreateSubscriptionResponse:
        work = self.ctx.runtime.run_blocking(
            self.subscriptions.create, current_principal(), request.resource_code
        )
        resource = request.resource_code.strip() or None
        sub = await self._audited(Action.SUBSCRIPTION_CREATE, work, resource=resource)
        await self._record(Action.SUBSCRIPTION_CREATE, sub)
        return pb.CreateSubscriptionResponse(subscription=subscription_to_pb(sub))

    async def ListSubscriptions(
        self, request: pb.ListSubscriptionsRequest, context: Any
    ) -> pb.ListSubscriptionsResponse:
        subs = await self.ctx.runtime.run_blocking(self.subscriptions.of, current_principal())
        return pb.ListSubscriptionsResponse(subscriptions=[subscription_to_pb(s) for s in subs])

    async def CancelSubscription(
        self, request: pb.CancelSubscriptionRequest, context: Any
    ) -> pb.CancelSubscriptionResponse:
        work = self.ctx.runtime.run_blocking(
            self.subscriptions.cancel, current_principal(), request.subscription_id
        )
        details = {"subscription_id": request.subscription_id[:128] or "-"}
        sub = await self._audited(Action.SUBSCRIPTION_CANCEL, work, details=details)
        await self._record(Action.SUBSCRIPTION_CANCEL, sub)
        return pb.CancelSubscriptionResponse(subscription=subscription_to_pb(sub))

    async def _record(self, action: Action, sub: Subscription) -> None:
        pairs = {"subscription_id": sub.id, "grant_id": sub.grant_id}
        details = {key: value for key, value in pairs.items() if value}
        await self.ctx.runtime.recorder.record(action, resource=sub.resource_code, details=details)

    async def _audited(self, action: Action, work: Awaitable[T], **fields: Any) -> T:
        """Await ``work``; a refusal (not allowed, no grant, not the owner) is an audit event."""
        try:
            return await work
        except (PermissionDenied, FailedPrecondition, NotFound) as refused:
            await self.ctx.runtime.recorder.record(
                action, outcome=Outcome.DENIED, reason=refused.reason, **fields
            )
            raise

    async def ReceiveChanges(
        self, request: pb.ReceiveChangesRequest, context: Any
    ) -> AsyncIterator[pb.ReceiveChangesResponse]:
        principal = current_principal()
        sub = await self.ctx.runtime.run_blocking(
            self.subscriptions.active, principal, request.subscription_id
        )
        cursor = request.cursor or sub.acknowledged_cursor
        changes = self.deliverer.changes(principal, sub.resource_code, cursor, request.follow)
        async for batch in changes:
            yield batch

    async def AcknowledgeChanges(
        self, request: pb.AcknowledgeChangesRequest, context: Any
    ) -> pb.AcknowledgeChangesResponse:
        sub = await self.ctx.runtime.run_blocking(
            self.subscriptions.acknowledge,
            current_principal(),
            request.subscription_id,
            request.cursor,
        )
        return pb.AcknowledgeChangesResponse(subscription=subscription_to_pb(sub))

    # -- hosted uploads ----------------------------------------------------------------------
    async def UploadDataset(
        self, request_iterator: AsyncIterator[pb.UploadDatasetRequest], context: Any
    ) -> pb.UploadDatasetResponse:
        principal = current_principal()
        header: pb.UploadHeader | None = None
        chunks: list[bytes] = []
        size = 0
        async for part in request_iterator:
            if header is None:
                if part.WhichOneof("part") != "header":
                    raise _bad("header", "the first message must carry the upload header")
                header = part.header
                continue
            if part.WhichOneof("part") != "chunk":
                raise _bad("header", "only the first message carries a header")
            size += len(part.chunk)
            if size > MAX_UPLOAD_BYTES:
                raise _bad("chunk", f"the file is larger than {MAX_UPLOAD_BYTES} bytes")
            chunks.append(part.chunk)
        if header is None:
            raise _bad("header", "the upload is empty")
        code = canonical_code(header.resource_code) if header.resource_code else None
        work = self.ctx.runtime.run_blocking(
            self.uploads.apply, principal, header, b"".join(chunks)
        )
        result = await self._audited(Action.DATA_UPLOAD, work, resource=code)
        await self.ctx.runtime.recorder.record(
            Action.DATA_UPLOAD,
            resource=code,
            details={
                "version": str(result.version), "records_upserted": str(result.upserted),
                "records_deleted": str(result.deleted), "records_total": str(result.total),
                "bytes": str(size), "replayed": str(result.replayed).lower(),
            },
        )  # fmt: skip
        if not result.replayed and (result.upserted or result.deleted):
            self.hosted.signal.notify(canonical_code(header.resource_code))
        return pb.UploadDatasetResponse(
            version=result.version, records_upserted=result.upserted,
            records_deleted=result.deleted, records_total=result.total, replayed=result.replayed,
        )  # fmt: skip

    # -- delivery records --------------------------------------------------------------------
    async def ListDeliveries(
        self, request: pb.ListDeliveriesRequest, context: Any
    ) -> pb.ListDeliveriesResponse:
        principal = current_principal()
        size = bounded(request.page_size, DEFAULT_PAGE, MAX_PAGE, "page_size")
        before = parse_cursor(request.page_token, "page_token")
        code = canonical_code(request.resource_code) if request.resource_code else None
        await self.deliverer.book.flush()  # this process's own deliveries are listed
        rows = await self.ctx.runtime.run_blocking(
            self.deliverer.book.store.page, visibility(principal), code, before=before,
            limit=size + 1,
        )  # fmt: skip
        more = len(rows) > size
        rows = rows[:size]
        return pb.ListDeliveriesResponse(
            deliveries=[delivery_to_pb(d) for _, d in rows],
            next_page_token=str(rows[-1][0]) if more and rows else "",
        )


def _bad(field: str, problem: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field}: {problem}", reason="INVALID_UPLOAD", violations=[FieldViolation(field, problem)]
    )
