"""Delivery: grant admitted, provider asked, records minimised, the release recorded.

For every ``RequestData`` page, ``StreamDataset`` and ``ReceiveChanges``
stream, :class:`Deliverer`

1. admits the call on the caller organisation's grant (the grant index's
   O(1) :meth:`~exchange.grants.GrantIndex.check`: revocation and expiry at
   once; the grant's rate limit with cost = records, from the deliverer's own
   token buckets: one up front, the rest when the records are known); streams
   are admitted again for every batch, so a revocation stops a stream at its
   next batch;
2. works out what may leave: the grant's items that are items of the
   resource, not marked 不予共享 and not negative-listed
   (:class:`~exchange.minimise.Minimiser`), the rest withheld with the legal
   basis;
3. asks the resource's provider (:mod:`exchange.provider`) with a
   :class:`DeliveryContext` and the caller's remaining deadline;
4. minimises every record in place (:class:`~exchange.projection.Projector`):
   any field not allowed is removed whatever the provider sent; a record key
   leaves only when the same value leaves as an allowed field (a key may be an
   item the grant does not cover, e.g. an identity number); a record without
   a key is ``INTERNAL`` ``MALFORMED_RECORD`` and nothing of its batch leaves;
5. records the audit events ``data.request`` and ``data.release`` (durable
   before the data leaves; a stream's release event when it ends) and one
   delivery record (:class:`DeliveryBook`, written behind in batches) — once
   per call or stream, never per record. A refused or failed call is recorded
   as ``data.request`` with outcome denied / error.

Queries are decided on cached state while the provider is asked, then
confirmed on state read after the call arrived (:mod:`exchange.catalogue_cache`):
no thread hop per call, and nothing a fresh check would refuse leaves.

Example::

    deliverer = Deliverer(ctx, directory, DeliveryBook(DeliveryStore(db), runtime.executor))
    reply = await deliverer.request_data(principal, request)          # RequestDataResponse
    async for batch in deliverer.stream_dataset(principal, request):  # StreamDatasetResponse
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol, TypeVar

from audit_log.events import Action, Outcome
from catalog_registry.model import Resource, ResourceCode, ResourceStatus, ShareType
from catalog_registry.negative_list import NegativeList
from exchange.catalogue_cache import FreshCatalogue, Freshness, Missing
from exchange.context import ExchangeContext
from exchange.delivery_sql import Delivery, DeliveryStore
from exchange.grants import GrantIndex
from exchange.minimise import Minimiser
from exchange.model import Grant
from exchange.projection import Projector
from exchange.provider import Provider, ProviderDirectory, Query
from zhida.auth.principal import Principal
from zhida.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ZhidaError,
)
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.provider.v1 import data_provider_service_pb2 as ppb
from zhida.server.audit import EventFields
from zhida.server.context import current_trace_id

T = TypeVar("T")
log = logging.getLogger("zhida.exchange.delivery")
FLUSH_DELAY = 0.25  # seconds a delivery record may wait to share a write
FLUSH_ROWS = 1000  # or until this many are waiting
DEFAULT_PAGE, MAX_PAGE = 100, 1000
DEFAULT_BATCH, MAX_BATCH = 500, 5000


@functools.lru_cache(maxsize=4096)
def canonical_code(code: str) -> str:
    """``code`` in canonical form (INVALID_ARGUMENT when it is not a resource code)."""
    return ResourceCode.parse(code, "resource_code").text


def bounded(value: int, default: int, top: int, field: str) -> int:
    if value < 0:
        raise InvalidArgument(
            f"{field} must not be negative",
            reason="INVALID_ARGUMENT",
            violations=[FieldViolation(field, "must not be negative")],
        )
    return min(value or default, top)


@dataclass(frozen=True, slots=True)
class Release:
    """What one call may release, and to whom (built by :meth:`Deliverer.release_for`)."""

    grant: Grant
    resource: Resource
    allowed: frozenset[str]
    withheld: dict[str, str]  # item → legal basis
    provider: Provider
    context: ppb.DeliveryContext


class Cache(Protocol):
    """:class:`~exchange.catalogue_cache.FreshCatalogue`: resources and the negative list."""

    @property
    def negative(self) -> NegativeList: ...

    @property
    def negative_version(self) -> int: ...

    def refresh(self) -> None: ...

    def cached(self, code: str) -> Resource | Missing | None: ...

    def load(self, code: str) -> Resource | None: ...


class DeliveryBook:
    """Delivery records, written behind in batches: at most :data:`FLUSH_DELAY` after release.

    The durable record of a release is its ``data.release`` audit event (written
    before the data leaves, carrying the same delivery id, items and count);
    the table is the queryable index of them. Writing it in batches a few
    milliseconds apart keeps the calls from queueing on the database's write
    lock behind the audit log. :meth:`flush` waits until everything added so
    far is stored (``ListDeliveries`` calls it first, so a caller always sees
    its own deliveries).
    """

    def __init__(self, store: DeliveryStore, executor: Executor) -> None:
        self.store = store
        self._executor = executor
        self._pending: list[Delivery] = []
        self._counts: dict[str, int] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()

    def add(self, delivery: Delivery) -> None:
        """Queue ``delivery`` (a later :meth:`set_count` for it may still come)."""
        self._pending.append(delivery)
        self._schedule(now=len(self._pending) >= FLUSH_ROWS)

    def set_count(self, delivery_id: str, count: int) -> None:
        """Set the record count of a queued or stored delivery (the end of a stream)."""
        self._counts[delivery_id] = count
        self._schedule()

    def _schedule(self, *, now: bool = False) -> None:
        if self._flusher is None or self._flusher.done():
            loop = asyncio.get_running_loop()
            self._hurry = asyncio.Event()
            # An empty context: the flush outlives (and must not inherit) this call's deadline.
            self._flusher = loop.create_task(self._flush(), context=contextvars.Context())
        if now:
            self._hurry.set()

    async def flush(self) -> None:
        """Until every delivery added so far is stored (re-raises a failed write)."""
        while self._pending or self._counts or (self._flusher and not self._flusher.done()):
            self._schedule(now=True)
            assert self._flusher is not None
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), FLUSH_DELAY)
        while self._pending or self._counts:
            batch, self._pending = self._pending, []
            counts, self._counts = self._counts, {}
            batch = [replace(d, record_count=counts.pop(d.id, d.record_count)) for d in batch]
            try:
                await loop.run_in_executor(self._executor, self._write, batch, counts)
            except Exception:
                log.exception("could not store %d delivery records", len(batch))
                raise

    def _write(self, batch: list[Delivery], counts: dict[str, int]) -> None:
        self.store.insert_many(batch)
        self.store.set_counts(counts)


class Deliverer:
    """The delivery RPCs' logic (see the module docstring)."""

    def __init__(
        self,
        ctx: ExchangeContext,
        directory: ProviderDirectory,
        book: DeliveryBook,
        catalogue: Cache | None = None,
    ) -> None:
        self.ctx = ctx
        self.directory = directory
        self.book = book
        self.catalogue: Cache = catalogue or FreshCatalogue(ctx.catalogue, ctx.runtime.database)
        self.limiter = ctx.grants.limiter  # the index's: it forgets ended grants' buckets
        quick = getattr(self.catalogue, "quick", None)
        self.fresh = Freshness(self._refresh, ctx.runtime.executor, quick=quick)
        self._rules: dict[tuple[str, str, int, int], tuple[frozenset[str], dict[str, str]]] = {}
        self._warm = False  # a first refresh has run
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(6)
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- helpers -----------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Grants (other workers' writes, within the index's interval) and catalogue versions."""
        refresh = getattr(self.ctx.grants, "refresh", None)
        if refresh is not None:
            refresh()
        self.catalogue.refresh()

    def _admit(self, principal: Principal, code: str, cost: int) -> Grant:
        """The caller's grant, checked now (in memory: call after :attr:`fresh`), rate taken."""
        now = self.ctx.clock()
        grant = GrantIndex.check(self.ctx.grants, principal.organisation, code, now)
        self.limiter.take(grant, now, cost)
        return grant

    def _rule(self, grant: Grant, resource: Resource) -> tuple[frozenset[str], dict[str, str]]:
        """Allowed items and withheld ones (with why) for a grant on a resource version."""
        negative = self.catalogue.negative
        # A NegativeList is reloaded in place: key by the version, never by the object.
        key = (grant.id, resource.key, resource.version, self.catalogue.negative_version)
        rule = self._rules.get(key)
        if rule is not None:
            return rule
        code = resource.key
        minimiser = Minimiser(grant.items, partial(negative.may_release, code))
        withheld = dict(minimiser.refused)
        items = {item.name: item for item in resource.items}
        allowed: set[str] = set()
        for name in minimiser.fields:
            item = items.get(name)
            if item is None:
                withheld[name] = "not a data item of the resource"
            elif resource.item_share_type(item) is ShareType.NOT_SHARED:
                withheld[name] = resource.spec.share_conditions or "不予共享"
            else:
                allowed.add(name)
        if len(self._rules) > 4096:
            self._rules.clear()
        rule = self._rules[key] = (frozenset(allowed), withheld)
        return rule

    async def _resource(self, code: str) -> Resource:
        """Resource ``code`` as of the last refresh; NOT_FOUND, or RESOURCE_RETIRED."""
        cached = self.catalogue.cached(code)
        resource = (
            await self.ctx.runtime.run_blocking(self.catalogue.load, code)
            if isinstance(cached, Missing)
            else cached
        )
        if resource is None:
            raise NotFound(f"resource {code} not found", reason="RESOURCE_NOT_FOUND")
        if resource.status is ResourceStatus.RETIRED:
            raise FailedPrecondition(
                f"resource {code} is retired", reason="RESOURCE_RETIRED", metadata={"code": code}
            )
        return resource

    async def release_for(
        self, principal: Principal, code: str, cost: int, *, fresh: bool = True
    ) -> Release:
        """Admit the call and work out what may leave.

        With ``fresh`` (streams) from state read after the call arrived; without
        (queries) from the cached state, to be confirmed by :meth:`confirmed`.
        """
        if fresh or not self._warm:
            await self.fresh.wait()
            self._warm = True
        grant = self._admit(principal, code, cost)
        resource = await self._resource(code)
        allowed, withheld = self._rule(grant, resource)
        provider = self.directory.for_resource(resource)
        context = ppb.DeliveryContext(
            requester_org=principal.organisation, requester_subject=principal.subject,
            grant_id=grant.id, granted_items=_in_order(allowed), purpose=grant.purpose,
            trace_id=current_trace_id(),
            node_region_code=self.ctx.runtime.config.node.region_code,
        )  # fmt: skip
        return Release(grant, resource, allowed, withheld, provider, context)

    async def confirmed(self, principal: Principal, r: Release) -> Release:
        """``r`` decided again on state read after the call arrived (no tokens taken)."""
        code = r.grant.resource_code
        grant = GrantIndex.check(self.ctx.grants, principal.organisation, code, self.ctx.clock())
        resource = await self._resource(code)
        allowed, withheld = self._rule(grant, resource)
        if grant is r.grant and resource is r.resource and allowed is r.allowed:
            return r  # the common case: nothing changed since the call arrived
        return replace(r, grant=grant, resource=resource, allowed=allowed, withheld=withheld)

    async def _admitted(
        self, principal: Principal, code: str, kind: str, cost: int, *, fresh: bool = True
    ) -> Release:
        try:
            return await self.release_for(principal, code, cost, fresh=fresh)
        except (PermissionDenied, ResourceExhausted) as refused:
            await self._denied(refused, code, kind)
            raise

    async def _denied(self, refused: ZhidaError, code: str, kind: str) -> None:
        """A refused delivery (no grant, revoked, rate limited) as a denied data.request."""
        await self.ctx.runtime.recorder.record(
            Action.DATA_REQUEST, outcome=Outcome.DENIED, reason=refused.reason,
            resource=code, details={"kind": kind},
        )  # fmt: skip

    def _delivery(self, principal: Principal, r: Release, kind: str, count: int) -> Delivery:
        return Delivery(
            id=f"{self._id_prefix}{next(self._ids):010x}", kind=kind,
            requester_org=principal.organisation, requester_subject=principal.subject,
            provider_org=r.grant.provider_org, resource_code=r.grant.resource_code,
            grant_id=r.grant.id, items=_in_order(r.allowed), record_count=count,
            purpose=r.grant.purpose, trace_id=current_trace_id(), delivered_at=self.ctx.clock(),
        )  # fmt: skip

    @staticmethod
    def _fields(
        action: Action, r: Release, d: Delivery, error: ZhidaError | None = None
    ) -> EventFields:
        details = {
            "kind": d.kind, "grant_id": r.grant.id, "delivery_id": d.id,
            "items": ",".join(d.items), "provider": r.provider.name,
        }  # fmt: skip
        if action is Action.DATA_RELEASE:
            details["records"] = str(d.record_count)
        outcome, reason = (Outcome.OK, None) if error is None else (Outcome.ERROR, error.reason)
        return EventFields(
            outcome=outcome, reason=reason, resource=d.resource_code,
            purpose=r.grant.purpose, details=details,
        )  # fmt: skip

    def _event(
        self, action: Action, r: Release, d: Delivery, error: ZhidaError | None = None
    ) -> Coroutine[Any, Any, int]:
        return self.ctx.runtime.recorder.record(action, **self._fields(action, r, d, error))

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self, r: Release, d: Delivery, error: ZhidaError | None) -> None:
        """The end of a stream: its record count and its ``data.release`` event."""
        self.book.set_count(d.id, d.record_count)
        await self._event(Action.DATA_RELEASE, r, d, error)

    # -- RequestData -------------------------------------------------------------------------
    async def request_data(
        self, principal: Principal, request: pb.RequestDataRequest
    ) -> pb.RequestDataResponse:
        code = canonical_code(request.resource_code)
        size = bounded(request.page_size, DEFAULT_PAGE, MAX_PAGE, "page_size")
        # Decided on the cached state first; the provider is asked while the state is
        # read again (on SQLite without leaving the loop), and only what the fresh
        # state allows leaves.
        r = await self._admitted(principal, code, "query", 1, fresh=False)
        _check_filters(request.filters, r.allowed)
        query = Query(code, request.key, request.filters, size, request.page_token, r.context)
        try:
            if self.fresh.quick():  # fresh already (SQLite): no second task to overlap
                reply = await r.provider.query(query)
            else:
                reply, _ = await asyncio.gather(r.provider.query(query), self.fresh.wait())
            r = await self.confirmed(principal, r)
            _check_filters(request.filters, r.allowed)
            count = Projector(r.allowed).records(reply.records)
            if count > 1 and r.grant.rate_limit_per_minute:
                self.limiter.take(r.grant, self.ctx.clock(), count - 1)  # grant just confirmed
        except (PermissionDenied, ResourceExhausted) as refused:
            await self._denied(refused, code, "query")
            raise
        except ZhidaError as error:
            await self._event(
                Action.DATA_REQUEST, r, self._delivery(principal, r, "query", 0), error
            )
            raise
        reply.grant_id = r.grant.id
        del reply.items_delivered[:]
        reply.items_delivered.extend(_in_order(r.allowed))
        del reply.items_withheld[:]
        for item, basis in sorted(r.withheld.items()):
            reply.items_withheld.add(item=item, legal_basis=basis)
        delivery = self._delivery(principal, r, "query", count)
        # Both events in one append: one queue entry, one wakeup, no task per event.
        await self.ctx.runtime.recorder.record_many(
            (Action.DATA_REQUEST, self._fields(Action.DATA_REQUEST, r, delivery)),
            (Action.DATA_RELEASE, self._fields(Action.DATA_RELEASE, r, delivery)),
        )
        self.book.add(delivery)
        return reply

    # -- streams -----------------------------------------------------------------------------
    async def _released(
        self,
        principal: Principal,
        r: Release,
        kind: str,
        batches: AsyncIterator[Any],
        changes: bool,
    ) -> AsyncIterator[Any]:
        """Re-check, admit, minimise and count each batch; record the stream once at each end.

        Every batch is decided on state read after it arrived: a revoked grant
        stops the stream, an item negative-listed meanwhile stops leaving.
        """
        delivery = self._delivery(principal, r, kind, 0)
        await self._event(Action.DATA_REQUEST, r, delivery)
        self.book.add(delivery)
        projector = Projector(r.allowed)
        count = 0
        try:
            async for batch in batches:
                items = batch.changes if changes else batch.records
                await self.fresh.wait()
                r = await self.confirmed(principal, r)
                self.limiter.take(r.grant, self.ctx.clock(), len(items))
                if projector.allowed != r.allowed:
                    projector = Projector(r.allowed)
                count += projector.changes(items) if changes else projector.records(items)
                yield batch
        except ZhidaError as error:
            await self._finish(r, _counted(delivery, count), error)
            raise
        except BaseException:  # cancelled or closed: record it without holding the caller
            self._spawn(self._finish(r, _counted(delivery, count), None))
            raise
        await self._finish(r, _counted(delivery, count), None)

    async def stream_dataset(
        self, principal: Principal, request: pb.StreamDatasetRequest
    ) -> AsyncIterator[pb.StreamDatasetResponse]:
        code = canonical_code(request.resource_code)
        size = bounded(request.batch_size, DEFAULT_BATCH, MAX_BATCH, "batch_size")
        r = await self._admitted(principal, code, "stream", 0)
        if r.grant.rate_limit_per_minute:
            size = min(size, r.grant.rate_limit_per_minute)
        batches = r.provider.stream(code, request.cursor, size, r.context)
        async for batch in self._released(principal, r, "stream", batches, changes=False):
            yield batch

    async def changes(
        self, principal: Principal, code: str, cursor: str, follow: bool
    ) -> AsyncIterator[pb.ReceiveChangesResponse]:
        """A subscription's changes after ``cursor`` (the subscription already checked)."""
        r = await self._admitted(principal, code, "subscription", 0)
        batches = r.provider.changes(code, cursor, follow, r.context)
        async for batch in self._released(principal, r, "subscription", batches, changes=True):
            yield batch


_ORDERED: dict[frozenset[str], tuple[str, ...]] = {}


def _in_order(allowed: frozenset[str]) -> tuple[str, ...]:
    """``tuple(sorted(allowed))``, remembered (a grant's items are sorted on every call)."""
    found = _ORDERED.get(allowed)
    if found is None:
        if len(_ORDERED) > 4096:
            _ORDERED.clear()
        found = _ORDERED[allowed] = tuple(sorted(allowed))
    return found


def _check_filters(filters: Any, allowed: frozenset[str]) -> None:
    bad = [
        FieldViolation(f"filters[{name}]", "is not an item this grant releases")
        for name in filters
        if name not in allowed
    ]
    if bad:
        raise InvalidArgument(
            "filters may only name released items", reason="FILTER_NOT_GRANTED", violations=bad
        )


def _counted(d: Delivery, count: int) -> Delivery:
    return replace(d, record_count=count)
