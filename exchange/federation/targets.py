"""Which calls travel between federation nodes, and where each one is going (issue 8).

:data:`FORWARDABLE` lists the methods a node forwards when their target lies
in another region, with how to read the target from the request (``streaming``:
a server-streaming method, carried by ``ForwardStream`` instead of ``Forward``):

* ``/zhida.exchange.v1.ExchangeService/RequestData``, ``/ApplyForData``,
  ``/CreateSubscription`` and the stream ``/StreamDataset`` — target kind
  ``resource``: the resource code; its region is the resource's
  ``region_code`` in this node's catalogue (which holds other levels'
  resources once catalogue federation has run). A code the catalogue does
  not know stays local (the service answers NOT_FOUND).
* ``/ReceiveChanges`` (stream), ``/AcknowledgeChanges``, ``/CancelSubscription``
  — target kind ``subscription``: the subscription lives at the node that
  serves its resource, and its id names that node's region
  (``<region>-<32 hex>``, :func:`subscription_region`); an id without a
  region (made before issue 8 item 5) stays local. ``/ListSubscriptions``
  names no region: it is forwarded only with ``x-zhida-target-region``.
* ``/zhida.licence.v1.LicenceVaultService/FetchLicences`` — target kind
  ``licence``: the holding region. ``FetchLicencesRequest`` carries no region
  hint: the caller may name it in the ``x-zhida-target-region`` metadata;
  without it the forwarder asks the licence index
  (:class:`exchange.federation.licence_routing.LicenceLocator`).

``x-zhida-target-region`` overrides the catalogue for every forwardable method.

The digest a custody chain carries covers the method name as well as the
request bytes (:func:`digest_input`): a hop that swaps the method is caught like
one that alters the request.

Example::

    >>> spec = FORWARDABLE["/zhida.exchange.v1.ExchangeService/ApplyForData"]
    >>> spec.target_kind, spec.target(spec.request_type(resource_code="2-03-001-0000-000005"))
    ('resource', '2-03-001-0000-000005')
    >>> target_region_header([("x-zhida-target-region", "430000")])
    '430000'
    >>> subscription_region("100000-" + "0" * 32), subscription_region("0" * 32)
    ('100000', None)
    >>> digest_input("/a.B/C", b"xy")
    b'/a.B/C\\nxy'
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from google.protobuf.message import Message

from zhida.errors import FieldViolation, InvalidArgument
from zhida.exchange.v1 import exchange_service_pb2 as xpb
from zhida.licence.v1 import licence_vault_service_pb2 as lpb
from zhida.regions import RegionCodeError, parse_region

__all__ = [
    "FORWARDABLE",
    "IDEMPOTENCY_HEADER",
    "TARGET_REGION_HEADER",
    "Forwardable",
    "RegionCache",
    "digest_input",
    "header",
    "idempotency_header",
    "subscription_region",
    "target_region_header",
]

TARGET_REGION_HEADER = "x-zhida-target-region"
IDEMPOTENCY_HEADER = "x-idempotency-key"
MAX_IDEMPOTENCY_KEY = 128


@dataclass(frozen=True, slots=True)
class Forwardable:
    """One forwardable unary method."""

    method: str
    target_kind: str
    """``resource`` or ``licence`` (the assertion's ``target_kind``)."""
    request_type: type[Message]
    response_type: type[Message]
    target: Callable[[Any], str]
    """The target named by a request (resource code; matter code for a licence fetch)."""
    by_catalogue: bool
    """True when the target's region comes from the catalogue (a resource code)."""
    streaming: bool = False
    """A server-streaming method (``ForwardStream``); otherwise unary (``Forward``)."""
    region_of: Callable[[Any], str | None] | None = None
    """The target region read from the request itself (a subscription id), or None."""


def _resource(request: Any) -> str:
    return str(request.resource_code)


def _matter(request: Any) -> str:
    return str(request.matter_code) or "licences"


_SUBSCRIPTION_ID = re.compile(r"([0-9]{6})-[0-9a-f]{32}")


def subscription_region(subscription_id: str) -> str | None:
    """The region of the node holding subscription ``subscription_id`` (None: no region in it)."""
    found = _SUBSCRIPTION_ID.fullmatch(subscription_id)
    if found is None:
        return None
    try:
        return parse_region(found.group(1)).code
    except RegionCodeError:
        return None


def _subscription(request: Any) -> str:
    return str(request.subscription_id) or "subscriptions"


def _subscription_region(request: Any) -> str | None:
    return subscription_region(str(request.subscription_id))


def _all_subscriptions(request: Any) -> str:
    return "subscriptions"


def _no_region(request: Any) -> str | None:
    return None


_EXCHANGE = "/zhida.exchange.v1.ExchangeService/"
_LICENCE = "/zhida.licence.v1.LicenceVaultService/"

FORWARDABLE: Mapping[str, Forwardable] = MappingProxyType(
    {
        f.method: f
        for f in (
            Forwardable(
                _EXCHANGE + "RequestData",
                "resource",
                xpb.RequestDataRequest,
                xpb.RequestDataResponse,
                _resource,
                True,
            ),
            Forwardable(
                _EXCHANGE + "ApplyForData",
                "resource",
                xpb.ApplyForDataRequest,
                xpb.ApplyForDataResponse,
                _resource,
                True,
            ),
            Forwardable(
                _EXCHANGE + "StreamDataset",
                "resource",
                xpb.StreamDatasetRequest,
                xpb.StreamDatasetResponse,
                _resource,
                True,
                streaming=True,
            ),
            Forwardable(
                _EXCHANGE + "CreateSubscription",
                "resource",
                xpb.CreateSubscriptionRequest,
                xpb.CreateSubscriptionResponse,
                _resource,
                True,
            ),
            Forwardable(
                _EXCHANGE + "ReceiveChanges",
                "subscription",
                xpb.ReceiveChangesRequest,
                xpb.ReceiveChangesResponse,
                _subscription,
                False,
                streaming=True,
                region_of=_subscription_region,
            ),
            Forwardable(
                _EXCHANGE + "AcknowledgeChanges",
                "subscription",
                xpb.AcknowledgeChangesRequest,
                xpb.AcknowledgeChangesResponse,
                _subscription,
                False,
                region_of=_subscription_region,
            ),
            Forwardable(
                _EXCHANGE + "CancelSubscription",
                "subscription",
                xpb.CancelSubscriptionRequest,
                xpb.CancelSubscriptionResponse,
                _subscription,
                False,
                region_of=_subscription_region,
            ),
            Forwardable(
                _EXCHANGE + "ListSubscriptions",
                "subscription",
                xpb.ListSubscriptionsRequest,
                xpb.ListSubscriptionsResponse,
                _all_subscriptions,
                False,
                region_of=_no_region,
            ),
            Forwardable(
                _LICENCE + "FetchLicences",
                "licence",
                lpb.FetchLicencesRequest,
                lpb.FetchLicencesResponse,
                _matter,
                False,
            ),
        )
    }
)


def digest_input(method: str, request: bytes) -> bytes:
    """The bytes a custody chain's ``digest`` covers: the method name, a newline, the request."""
    return method.encode("ascii") + b"\n" + request


def header(metadata: Iterable[tuple[str, Any]] | None, name: str) -> str | None:
    """The last string value of metadata key ``name``, or None."""
    found: str | None = None
    for key, value in metadata or ():
        if key == name and isinstance(value, str):
            found = value
    return found


def target_region_header(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The region named by ``x-zhida-target-region``; InvalidArgument if it is not a region code."""
    value = header(metadata, TARGET_REGION_HEADER)
    if value is None:
        return None
    try:
        return parse_region(value.strip()).code
    except RegionCodeError as exc:
        raise InvalidArgument(
            f"{TARGET_REGION_HEADER}: {exc}",
            reason="INVALID_TARGET_REGION",
            violations=[FieldViolation(TARGET_REGION_HEADER, str(exc))],
        ) from None


def idempotency_header(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The caller's ``x-idempotency-key`` (1-128 printable ASCII characters), or None."""
    value = header(metadata, IDEMPOTENCY_HEADER)
    if value is None:
        return None
    if not 0 < len(value) <= MAX_IDEMPOTENCY_KEY or not value.isascii() or not value.isprintable():
        raise InvalidArgument(
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
            reason="INVALID_IDEMPOTENCY_KEY",
            violations=[FieldViolation(IDEMPOTENCY_HEADER, "1-128 printable ASCII characters")],
        )
    return value


class RegionCache:
    """``code → region`` from a blocking lookup, remembered ``ttl_seconds``. Thread-safe.

    A code the lookup does not know (None) is remembered too, for a shorter
    time (``miss_ttl_seconds``), so a resource registered later is found soon.
    """

    def __init__(
        self,
        lookup: Callable[[str], str | None],
        *,
        ttl_seconds: float = 10.0,
        miss_ttl_seconds: float = 1.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl_seconds
        self._miss_ttl = miss_ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, code: str) -> tuple[bool, str | None]:
        """(True, region) when ``code`` is cached and fresh; (False, None) otherwise."""
        with self._lock:
            entry = self._entries.get(code)
        if entry is not None and entry[0] > self._clock():
            return True, entry[1]
        return False, None

    def region_of(self, code: str) -> str | None:
        """The region of ``code`` (blocking on a miss), or None when unknown."""
        hit, region = self.cached(code)
        if hit:
            return region
        region = self._lookup(code)
        expires = self._clock() + (self._ttl if region is not None else self._miss_ttl)
        with self._lock:
            self._entries[code] = (expires, region)
            self._entries.move_to_end(code)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return region
