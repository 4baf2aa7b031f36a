"""Routing a licence fetch by the licence index (issue 8, item 4): 跨省通办.

An application in 湖北 asks its own node for a holder's licences; the
licences were issued in 湖南. ``FetchLicencesRequest`` names no region, so
the origin node finds it with :meth:`LicenceLocator.region_for` (the
forwarder's :attr:`~exchange.federation.forwarder.Federation.licence_region`
hook, called after authentication and policy, unless the caller named the
region in ``x-zhida-target-region``):

1. a request the vault would refuse whatever the data (bad holder code,
   unknown type or matter, a type the matter does not use) stays here, so
   the caller gets the vault's own INVALID_ARGUMENT / PERMISSION_DENIED;
2. if this node's vault holds any licence of the holder of the requested
   types, the fetch is served here (only here: licences of the same fetch
   held elsewhere are not merged);
3. otherwise :meth:`LicenceLocator.locate` asks the index — this node's
   (its own licences and its subtree's), and when that knows none, the
   parent's ``LicenceIndexService/LocateHolder`` over mutual TLS, which
   does the same up to the national node, whose index covers the country.
   Only the holder's keyed hash travels, never the ID number;
4. one holding region: the fetch is forwarded there as any forwardable call
   (signed assertion, custody chain, per-hop audit, idempotency). None:
   NOT_FOUND ``LICENCE_HOLDER_UNKNOWN`` (recorded in this node's audit log).
   Several: FAILED_PRECONDITION ``LICENCES_IN_SEVERAL_REGIONS`` naming them —
   the caller fetches from each with ``x-zhida-target-region``.

A found region is remembered for ``ttl`` seconds (licences do not move
between nodes); a miss is not, so a licence issued a moment ago is found
as soon as its index entry has reached a common ancestor.

Consent stays where the licences are: the holder grants it at the issuing
node (``GrantConsent`` is not forwarded), and that node's vault checks it
against the asserted caller's organisation, as for a local fetch.

:func:`push_licence_index` is the background push's uplink
(:func:`exchange.federation.background.start_federation`): a page of the
index to the parent's ``PushLicenceIndex``.

Example::

    locator = LicenceLocator(runtime, "420000", parent="127.0.0.1:7001", channel=open_channel)
    await locator.region_for(FetchLicencesRequest(holder_code=uscc, type_codes=[...], ...))
    # '430000' — forwarded there; None — served here
    await push_licence_index(parent_channel, entries)   # a child's page → parent's index
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from sqlalchemy import select

from audit_log.events import Action, Outcome
from exchange.federation.licence_index import (
    MAX_LOOKUP,
    HolderLocation,
    IndexEntry,
    LicenceIndex,
    LicenceIndexStore,
)
from exchange.federation.remote import neighbour_error
from licence_vault.holder import detect_code_type, validate_holder
from licence_vault.matters import MatterRegistry
from licence_vault.models import LicenceRow
from licence_vault.types import TypeRegistry
from zhida.errors import FailedPrecondition, NotFound, ZhidaError
from zhida.federation.v1 import licence_index_pb2 as ipb
from zhida.federation.v1 import licence_index_pb2_grpc as ipb_grpc
from zhida.regions import parse_region
from zhida.server.context import TRACE_ID, time_remaining

__all__ = [
    "LicenceLocator",
    "entry_message",
    "entry_of",
    "location_message",
    "push_licence_index",
]

log = logging.getLogger("zhida.federation")

LOCATE_TIMEOUT_SECONDS = 10.0
PUSH_TIMEOUT_SECONDS = 15.0
FETCH_METHOD = "/zhida.licence.v1.LicenceVaultService/FetchLicences"
LICENCE = LicenceRow.__table__


def entry_message(entry: IndexEntry) -> ipb.LicenceIndexEntry:
    return ipb.LicenceIndexEntry(
        holder_ref=entry.holder_ref,
        licence_id=entry.licence_id,
        type_code=entry.type_code,
        region_code=entry.region_code,
    )


def entry_of(message: ipb.LicenceIndexEntry) -> IndexEntry:
    return IndexEntry(
        message.holder_ref, message.licence_id, message.type_code, message.region_code
    )


def location_message(where: HolderLocation, answered_by: str) -> ipb.LocateHolderResponse:
    """The ``LocateHolder`` answer for ``where`` (``answered_by``: the node whose index knew)."""
    return ipb.LocateHolderResponse(
        holder_ref=where.holder_ref,
        entries=[entry_message(e) for e in where.entries],
        regions=list(where.regions),
        provinces=list(where.provinces),
        answered_by=answered_by if where.entries else "",
    )


async def push_licence_index(channel: grpc.aio.Channel, entries: Sequence[IndexEntry]) -> None:
    """The licence-index uplink: ``entries`` to the parent's ``PushLicenceIndex``.

    Raises ``grpc.aio.AioRpcError`` when the parent refuses or cannot be
    reached (the push loop keeps its cursor and retries with backoff).
    """
    stub = ipb_grpc.LicenceIndexServiceStub(channel)
    await stub.PushLicenceIndex(
        ipb.PushLicenceIndexRequest(entries=[entry_message(e) for e in entries]),
        timeout=PUSH_TIMEOUT_SECONDS,
    )


class LicenceLocator:
    """Where a holder's licences are, for this node; see the module docstring.

    ``parent`` is the parent node's federation address ("" at the top) and
    ``channel`` opens (or reuses) an mTLS channel to an address, in the
    serving loop. Nothing touches the runtime until first use.
    """

    def __init__(
        self,
        runtime: Any,
        region: str,
        *,
        parent: str,
        channel: Callable[[str], grpc.aio.Channel],
        ttl: float = 30.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.region = region
        self.parent = parent
        self._channel = channel
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._found: OrderedDict[tuple[str, tuple[str, ...]], tuple[float, str]] = OrderedDict()
        self._index: LicenceIndex | None = None
        self._types = TypeRegistry.builtin()
        self._matters = MatterRegistry.builtin()

    @property
    def index(self) -> LicenceIndex:
        """This node's licence index (opened on first use)."""
        if self._index is None:
            store = LicenceIndexStore(self.runtime.database)
            self._index = LicenceIndex(store, self.region, self.runtime.audit.holder_ref)
        return self._index

    # -- the look-up, up the chain -----------------------------------------------------------
    def _lookup(self, holder_ref: str, type_codes: Sequence[str]) -> tuple[IndexEntry, ...]:
        wanted = set(type_codes)
        entries = self.index.store.lookup(holder_ref, type_codes[0] if len(wanted) == 1 else None)
        return tuple(e for e in entries if not wanted or e.type_code in wanted)[:MAX_LOOKUP]

    async def locate(
        self, holder_ref: str, type_codes: Sequence[str] = ()
    ) -> tuple[str, HolderLocation]:
        """``(answered_by, location)``: from this node's index, else the parent's answer.

        ``answered_by`` is the region of the node whose index knew the holder
        ("" when none did). A parent that cannot be reached: UNAVAILABLE
        ``NEIGHBOUR_UNAVAILABLE``; its refusal comes back as it was.
        """
        types = tuple(type_codes)
        entries = await self.runtime.run_blocking(self._lookup, holder_ref, types)
        if entries or not self.parent:
            return (self.region if entries else ""), HolderLocation(holder_ref, entries)
        remaining = time_remaining()
        timeout = LOCATE_TIMEOUT_SECONDS if remaining is None else min(remaining, 10.0)
        stub = ipb_grpc.LicenceIndexServiceStub(self._channel(self.parent))
        try:
            reply = await stub.LocateHolder(
                ipb.LocateHolderRequest(holder_ref=holder_ref, type_codes=types),
                timeout=max(timeout, 0.001),
                metadata=(("x-trace-id", TRACE_ID.get()),) if TRACE_ID.get() else None,
            )
        except grpc.aio.AioRpcError as error:
            parent_region = parse_region(self.region).parent or "parent"
            raise neighbour_error(error, parent_region, self.parent) from None
        found = tuple(entry_of(m) for m in reply.entries)
        return reply.answered_by, HolderLocation(holder_ref, found)

    # -- the forwarder's hook ----------------------------------------------------------------
    def _checked(self, request: Any) -> tuple[str, tuple[str, ...]] | None:
        """(holder code, type codes) of a fetch the vault would consider; None otherwise."""
        try:
            holder = validate_holder(request.holder_code, detect_code_type(request.holder_code))
            matter = self._matters.get(request.matter_code)
            types = tuple(dict.fromkeys(request.type_codes))
            for code in types:
                self._types.get(code)
        except ZhidaError:
            return None
        if not types or any(code not in matter.type_codes for code in types):
            return None
        return holder, types

    def _held_here(self, holder: str, types: Sequence[str]) -> bool:
        query = (
            select(LICENCE.c.id)
            .where(LICENCE.c.holder_code == holder, LICENCE.c.type_code.in_(list(types)))
            .limit(1)
        )
        with self.runtime.database.read() as conn:
            return conn.execute(query).first() is not None

    async def region_for(self, request: Any) -> str | None:
        """The region of the node holding the licences a ``FetchLicencesRequest`` asks for;
        None to serve it here. NOT_FOUND / FAILED_PRECONDITION as in the module docstring."""
        checked = self._checked(request)
        if checked is None:
            return None
        holder, types = checked
        if await self.runtime.run_blocking(self._held_here, holder, types):
            return None
        holder_ref = self.index.holder_ref(holder)
        key = (holder_ref, tuple(sorted(types)))
        cached = self._found.get(key)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        answered_by, where = await self.locate(holder_ref, types)
        regions = where.regions
        if self.region in regions:
            return None  # indexed here but not in the vault's table: let the vault answer
        if not regions:
            error: ZhidaError = NotFound(
                "no node of the federation holds a licence of these types for this holder",
                reason="LICENCE_HOLDER_UNKNOWN",
                metadata={"type_codes": ",".join(types)},
            )
            await self._refused(holder, types, error)
            raise error
        if len(regions) > 1:
            error = FailedPrecondition(
                f"the holder's licences of these types are held in {', '.join(regions)}: "
                "fetch from each with x-zhida-target-region",
                reason="LICENCES_IN_SEVERAL_REGIONS",
                metadata={"regions": ",".join(regions), "answered_by": answered_by},
            )
            await self._refused(holder, types, error)
            raise error
        self._remember(key, regions[0])
        return regions[0]

    def _remember(self, key: tuple[str, tuple[str, ...]], region: str) -> None:
        self._found[key] = (self._clock() + self._ttl, region)
        self._found.move_to_end(key)
        while len(self._found) > self._max:
            self._found.popitem(last=False)

    async def _refused(self, holder: str, types: Sequence[str], error: ZhidaError) -> None:
        """The origin's audit event for a fetch the index could not route."""
        try:
            await self.runtime.recorder.record(
                Action.DATA_REQUEST,
                outcome=Outcome.DENIED,
                reason=error.reason,
                holder_id=holder,
                details={
                    "federation": "origin",
                    "method": FETCH_METHOD,
                    "located_by": "licence_index",
                    "type_codes": ",".join(types),
                },
            )
        except Exception:  # the refusal stands; the operator must know
            log.exception("could not record a refused licence fetch in the audit log")
