"""Where a request for a region goes next, and how much time it may take (issue 8). Pure.

A node knows its own region (GB/T 2260, :mod:`zhida.regions`), its parent's
address, its children (region → address) and configured shortcuts (直达通道:
region → address; the node at the address serves that region's subtree).
For a target region :meth:`Router.route` answers one :class:`Hop`:

* ``LOCAL`` — the target is this node's region;
* ``DOWN`` / ``SHORTCUT`` — the target lies in the subtree of a child or of a
  shortcut; the most specific one wins, so a shortcut to a county beats the
  child province above it. For a target inside this node's own subtree only
  routes that stay below this node count (never a shortcut up, which would
  come back down);
* ``UP`` — otherwise, to the parent, until the target is in the subtree;
* refused — NOT_FOUND ``REGION_UNKNOWN`` when nothing covers the target
  (below this node but no child or shortcut for it; above it with no parent
  or shortcut: this node is the root), FAILED_PRECONDITION ``ROUTING_LOOP``
  when the custody path already holds this node or the next one.

:meth:`Router.plan` adds the deadline: the next hop gets the propagated
deadline minus ``hop_reserve_ms`` (time this node keeps for the answer's way
back); when less than ``min_budget_ms`` would remain, or the deadline has
passed for a local call, DEADLINE_EXCEEDED ``DEADLINE_BUDGET_EXHAUSTED`` —
before anything is executed or sent.

Example::

    >>> topo = Topology("420000", parent="national:50051",
    ...                 children={"420100": "wuhan:50051"}, shortcuts={"430000": "hunan:50051"})
    >>> router = Router(topo, hop_reserve_ms=20)
    >>> router.route("420102")
    Hop(kind=<RouteKind.DOWN: 'down'>, region='420100', address='wuhan:50051')
    >>> router.route("433101").kind, router.route("110000").kind, router.route("420000").kind
    (<RouteKind.SHORTCUT: 'shortcut'>, <RouteKind.UP: 'up'>, <RouteKind.LOCAL: 'local'>)
    >>> plan = router.plan("110000", deadline_ms=10_000, now_ms=9_000)
    >>> plan.hop.region, plan.deadline_ms, plan.timeout_seconds
    ('100000', 9980, 0.98)
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from zhida.config import Config
from zhida.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from zhida.regions import Level, Region, RegionCodeError, parse_region

__all__ = ["Hop", "Plan", "RouteKind", "Router", "Topology"]


class RouteKind(enum.Enum):
    LOCAL = "local"
    UP = "up"
    DOWN = "down"
    SHORTCUT = "shortcut"


@dataclass(frozen=True, slots=True)
class Hop:
    """The next node: ``region`` is its region code (the audience of what is sent to it)."""

    kind: RouteKind
    region: str
    address: str | None
    """``host:port``; None for LOCAL."""


@dataclass(frozen=True, slots=True)
class Plan:
    """A route with its time budget."""

    hop: Hop
    deadline_ms: int
    """Absolute deadline (Unix ms) for the next hop, or for local work."""
    timeout_seconds: float
    """``deadline_ms`` as a gRPC timeout from now."""


def _region(code: str, what: str) -> Region:
    try:
        return parse_region(code)
    except RegionCodeError as exc:
        raise InvalidArgument(
            f"{what}: {exc}",
            reason="INVALID_REGION_CODE",
            violations=[FieldViolation(what, str(exc))],
        ) from None


@dataclass(frozen=True)
class Topology:
    """One node's view of its neighbours. InvalidArgument if inconsistent."""

    region: str
    parent: str = ""
    children: Mapping[str, str] = field(default_factory=dict)
    shortcuts: Mapping[str, str] = field(default_factory=dict)
    parent_region: str | None = None
    """The parent node's region; default: the level above (``Region.parent``)."""

    def __post_init__(self) -> None:
        me = _region(self.region, "region")
        if self.parent and me.level is Level.NATIONAL:
            raise InvalidArgument("the national node has no parent", reason="INVALID_TOPOLOGY")
        if self.parent_region is not None:
            up = _region(self.parent_region, "parent_region")
            if up.code == me.code or not up.contains(me):
                raise InvalidArgument(
                    f"{up.code} is not above {me.code}", reason="INVALID_TOPOLOGY"
                )
        for code in self.children:
            child = _region(code, f"children.{code}")
            if child.code == me.code or not me.contains(child):
                raise InvalidArgument(
                    f"child {code} is not below {me.code}", reason="INVALID_TOPOLOGY"
                )
        for code in self.shortcuts:
            if _region(code, f"shortcuts.{code}").code == me.code:
                raise InvalidArgument("a shortcut to this node itself", reason="INVALID_TOPOLOGY")

    @classmethod
    def from_config(cls, config: Config) -> Topology:
        """The topology of ``config``'s node (``[node] region_code`` and ``[federation]``)."""
        fed = config.federation
        return cls(config.node.region_code, fed.parent, dict(fed.children), dict(fed.shortcuts))


class Router:
    """Routing decisions for one :class:`Topology`. Immutable, thread-safe."""

    def __init__(
        self, topology: Topology, *, hop_reserve_ms: int = 20, min_budget_ms: int = 10
    ) -> None:
        self.topology = topology
        self.me = parse_region(topology.region)
        self.hop_reserve_ms = hop_reserve_ms
        self.min_budget_ms = min_budget_ms
        self._children = [
            (parse_region(c), a, RouteKind.DOWN) for c, a in topology.children.items()
        ]
        self._shortcuts = [
            (parse_region(c), a, RouteKind.SHORTCUT) for c, a in topology.shortcuts.items()
        ]
        if topology.parent_region is not None:
            self._parent_region = topology.parent_region
        else:
            self._parent_region = self.me.parent or ""

    def route(self, target_region: str, *, path: Iterable[str] = ()) -> Hop:
        """The next hop towards ``target_region``.

        ``path`` is the custody path so far (``VerifiedCustody.path``: the
        origin, then each forwarding node); empty at the origin.
        """
        target = _region(target_region, "target_region")
        seen = set(path)
        me = self.me
        if me.code in seen:
            raise FailedPrecondition(
                f"routing loop: node {me.code} already handled this request "
                f"(path {' → '.join(path)})",
                reason="ROUTING_LOOP",
            )
        hop = self._next(target)
        if hop.region in seen:
            raise FailedPrecondition(
                f"routing loop: the next hop {hop.region} already handled this request",
                reason="ROUTING_LOOP",
            )
        return hop

    def _next(self, target: Region) -> Hop:
        me = self.me
        if target.code == me.code:
            return Hop(RouteKind.LOCAL, me.code, None)
        inside = me.contains(target)
        candidates = [
            (region, address, kind)
            for region, address, kind in (*self._children, *self._shortcuts)
            if region.contains(target) and (not inside or me.contains(region))
        ]
        if candidates:
            # most specific first; a child before a shortcut to the same region
            region, address, kind = max(
                candidates, key=lambda c: (c[0].level, c[2] is RouteKind.DOWN)
            )
            return Hop(kind, region.code, address)
        if not inside and self.topology.parent:
            return Hop(RouteKind.UP, self._parent_region, self.topology.parent)
        where = "below" if inside else "above"
        raise NotFound(
            f"no node serves region {target.code}: nothing {where} node {me.code} covers it",
            reason="REGION_UNKNOWN",
            metadata={"region": target.code},
        )

    def next_deadline(self, deadline_ms: int, *, now_ms: int) -> int:
        """The deadline to give the next hop; DEADLINE_EXCEEDED if too little would remain."""
        budget = deadline_ms - self.hop_reserve_ms - now_ms
        if budget < self.min_budget_ms:
            raise DeadlineExceeded(
                f"{max(deadline_ms - now_ms, 0)} ms left, but a hop needs "
                f"{self.hop_reserve_ms} ms reserve + {self.min_budget_ms} ms",
                reason="DEADLINE_BUDGET_EXHAUSTED",
            )
        return deadline_ms - self.hop_reserve_ms

    def plan(
        self,
        target_region: str,
        *,
        deadline_ms: int,
        now_ms: int,
        path: Iterable[str] = (),
    ) -> Plan:
        """:meth:`route` plus the deadline for what happens next (see the module docstring)."""
        hop = self.route(target_region, path=path)
        if hop.kind is RouteKind.LOCAL:
            if deadline_ms <= now_ms:
                raise DeadlineExceeded(
                    f"the deadline passed {now_ms - deadline_ms} ms ago",
                    reason="DEADLINE_BUDGET_EXHAUSTED",
                )
            deadline = deadline_ms
        else:
            deadline = self.next_deadline(deadline_ms, now_ms=now_ms)
        return Plan(hop, deadline, (deadline - now_ms) / 1000)
