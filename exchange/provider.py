"""Where a resource's data comes from: the :class:`Provider` interface and the hosted provider.

A resource's ``delivery_service`` in the catalogue names its provider: ``""``
or ``"hosted"`` is the node's own :class:`HostedProvider` (data uploaded to the
node); any other name is a department's system implementing
``zhida.provider.v1.DataProviderService``, reached at the address
``[exchange] providers`` maps it to (:class:`exchange.provider_client.RemoteProvider`).
:class:`ProviderDirectory` makes that choice.

Providers answer with the exchange's own response messages
(``RequestDataResponse``, ``StreamDatasetResponse``, ``ReceiveChangesResponse``)
holding the records **as the provider sent them**: the delivery layer
(:mod:`exchange.delivery`) minimises them in place before anything leaves.
The provider messages are wire-compatible with those (same field numbers for
records, cursors and page tokens), which lets the remote provider parse a
provider's bytes straight into them and the hosted provider frame stored
records without building them one by one.

Cursors of the hosted provider are decimal numbers: for ``StreamDataset`` the
position of the last record sent, for changes the last change sequence.

Example::

    directory = ProviderDirectory(hosted, remotes={"samr-registry": remote})
    provider = directory.for_resource(resource)          # by resource.spec.delivery_service
    async for batch in provider.stream(code, cursor="", batch_size=500, context=dctx):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from catalog_registry.model import Resource
from exchange.hosted import DELETE, HostedStore, StoredChange
from zhida.errors import FailedPrecondition, FieldViolation, InvalidArgument
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.provider.v1 import data_provider_service_pb2 as ppb

HOSTED = "hosted"
SCAN_CHUNK = 1000  # records read per query while filtering hosted data
SCAN_LIMIT = 20_000  # records examined per RequestData page at most
CHANGE_BATCH = 500
FOLLOW_POLL_SECONDS = 0.25  # other worker processes' uploads are seen within this


# ``NodeRuntime.run_blocking``: run a function in the I/O pool, honouring the call's deadline.
BlockingRunner = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Query:
    """A ``RequestData`` page as the provider sees it."""

    resource_code: str
    key: str
    filters: Mapping[str, str]
    page_size: int
    page_token: str
    context: ppb.DeliveryContext = field(default_factory=ppb.DeliveryContext)


class Provider(Protocol):
    """A source of a resource's records (see the module docstring)."""

    name: str

    async def query(self, q: Query) -> pb.RequestDataResponse:
        """One page of records and the next page token (records unminimised)."""
        ...

    def stream(
        self, resource_code: str, cursor: str, batch_size: int, context: ppb.DeliveryContext
    ) -> AsyncIterator[pb.StreamDatasetResponse]:
        """The dataset after ``cursor`` in batches, each with the cursor to resume after it."""
        ...

    def changes(
        self, resource_code: str, cursor: str, follow: bool, context: ppb.DeliveryContext
    ) -> AsyncIterator[pb.ReceiveChangesResponse]:
        """Changes after ``cursor``; with ``follow`` the iterator waits for new ones."""
        ...


def parse_cursor(cursor: str, field_name: str = "cursor") -> int:
    """A hosted cursor: ``""`` is 0, else a non-negative decimal number."""
    if not cursor:
        return 0
    if cursor.isascii() and cursor.isdigit() and len(cursor) <= 19:
        return int(cursor)
    raise InvalidArgument(
        f"{cursor[:40]!r} is not a cursor of this dataset",
        reason="INVALID_CURSOR",
        violations=[FieldViolation(field_name, "must be a cursor this node returned")],
    )


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_TAG_RECORDS = b"\x0a"  # field 1 (records), length-delimited, in every response
_TAGS = [_TAG_RECORDS + _varint(n) for n in range(4096)]


def frame_records(bodies: list[bytes]) -> bytes:
    """``bodies`` (encoded Records) as the ``records`` field of a response message."""
    tags = _TAGS
    return b"".join(
        [(tags[len(b)] if len(b) < 4096 else _TAG_RECORDS + _varint(len(b))) + b for b in bodies]
    )


class ChangeSignal:
    """Wakes followers of a resource when this process stored a change to it."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def notify(self, resource_code: str) -> None:
        event = self._events.pop(resource_code, None)
        if event is not None:
            event.set()

    async def wait(self, resource_code: str, timeout: float) -> None:
        """Until :meth:`notify` for the resource or ``timeout`` seconds."""
        event = self._events.get(resource_code)
        if event is None:
            event = self._events[resource_code] = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


def changes_message(rows: list[StoredChange]) -> pb.ReceiveChangesResponse:
    """Stored changes as a response (cursor: the last change's sequence)."""
    msg = pb.ReceiveChangesResponse(cursor=str(rows[-1].seq))
    for row in rows:
        change = msg.changes.add(
            operation=ppb.CHANGE_OPERATION_DELETE
            if row.operation == DELETE
            else ppb.CHANGE_OPERATION_UPSERT,
            cursor=str(row.seq),
        )
        change.record.MergeFromString(row.body)
        change.changed_at.FromDatetime(row.changed_at)
    return msg


class HostedProvider:
    """The node's built-in provider over a :class:`~exchange.hosted.HostedStore`."""

    name = HOSTED

    def __init__(
        self,
        store: HostedStore,
        run: BlockingRunner,
        signal: ChangeSignal | None = None,
        poll_seconds: float = FOLLOW_POLL_SECONDS,
    ) -> None:
        self.store = store
        self._run = run
        self.signal = signal or ChangeSignal()
        self.poll_seconds = poll_seconds

    async def query(self, q: Query) -> pb.RequestDataResponse:
        if q.key:
            body = await self._run(self.store.get, q.resource_code, q.key)
            return pb.RequestDataResponse.FromString(frame_records([body] if body else []))
        after = parse_cursor(q.page_token, "page_token")
        bodies, next_token = await self._run(
            self._filter, q.resource_code, dict(q.filters), after, q.page_size
        )
        reply = pb.RequestDataResponse.FromString(frame_records(bodies))
        reply.next_page_token = next_token
        return reply

    def _filter(
        self, code: str, filters: dict[str, str], after: int, size: int
    ) -> tuple[list[bytes], str]:
        """Matching bodies after position ``after`` and the token to continue (blocking)."""
        found: list[bytes] = []
        examined = 0
        record = ppb.Record()
        while examined < SCAN_LIMIT:
            rows = self.store.scan(code, after, SCAN_CHUNK)
            for pos, body in rows:
                after = pos
                examined += 1
                record.Clear()
                record.MergeFromString(body)
                values = record.fields
                if all(values.get(k) == v for k, v in filters.items()):
                    found.append(body)
                    if len(found) == size:
                        return found, str(pos)
            if len(rows) < SCAN_CHUNK:
                return found, ""
        return found, str(after)

    def _batch(self, code: str, after: int, size: int) -> tuple[pb.StreamDatasetResponse, int]:
        rows = self.store.scan(code, after, size)
        if not rows:
            return pb.StreamDatasetResponse(), after
        last = rows[-1][0]
        reply = pb.StreamDatasetResponse.FromString(frame_records([b for _, b in rows]))
        reply.cursor = str(last)
        return reply, last

    async def stream(
        self, resource_code: str, cursor: str, batch_size: int, context: ppb.DeliveryContext
    ) -> AsyncIterator[pb.StreamDatasetResponse]:
        after = parse_cursor(cursor)
        # One batch is read ahead while the previous one is being sent: the
        # database and the network overlap, and at most two batches are held.
        pending = asyncio.ensure_future(self._run(self._batch, resource_code, after, batch_size))
        try:
            while True:
                reply, after = await pending
                if not reply.records:
                    return
                more = len(reply.records) == batch_size
                if more:
                    pending = asyncio.ensure_future(
                        self._run(self._batch, resource_code, after, batch_size)
                    )
                yield reply
                if not more:
                    return
        finally:
            if not pending.done():
                pending.cancel()

    async def changes(
        self, resource_code: str, cursor: str, follow: bool, context: ppb.DeliveryContext
    ) -> AsyncIterator[pb.ReceiveChangesResponse]:
        after = parse_cursor(cursor)
        while True:
            rows = await self._run(self.store.changes, resource_code, after, CHANGE_BATCH)
            if rows:
                after = rows[-1].seq
                yield changes_message(rows)
                if len(rows) == CHANGE_BATCH:
                    continue
            if not follow:
                return
            await self.signal.wait(resource_code, self.poll_seconds)


class ProviderDirectory:
    """Resolves a resource's ``delivery_service`` to its provider."""

    def __init__(self, hosted: HostedProvider, remotes: Mapping[str, Any]) -> None:
        self.hosted = hosted
        self.remotes: dict[str, Provider] = dict(remotes)

    def for_resource(self, resource: Resource) -> Provider:
        name = resource.spec.delivery_service.strip()
        if name in ("", HOSTED):
            return self.hosted
        remote = self.remotes.get(name)
        if remote is None:
            raise FailedPrecondition(
                f"the provider {name!r} of {resource.key} is not configured on this node",
                reason="PROVIDER_NOT_CONFIGURED",
                metadata={"provider": name, "resource_code": resource.key},
            )
        return remote

    @staticmethod
    def is_hosted(resource: Resource) -> bool:
        return resource.spec.delivery_service.strip() in ("", HOSTED)
