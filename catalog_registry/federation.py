"""Catalogue federation between levels: a change feed out, imports from child nodes in.

Every resource write on a node appends a change with a monotonically
increasing sequence (the repository does it in the same transaction).
:meth:`Federation.export_changes` pages through the feed with an integer
cursor (the last sequence seen; 0 for the start). Changes a node made itself
leave with ``origin_region`` = the node's region and ``origin_sequence`` =
their sequence; changes it imported keep their origin, so a province can pass
a county's changes on to the national node unchanged.

:meth:`Federation.import_from_child` takes a page from a node one level down;
:meth:`Federation.import_from_parent` takes a page of the parent's feed and
keeps the resources of the regions above this node (upper levels, visible
downward), so a search at a county finds national resources.
It accepts only resources whose region (and origin) lie inside the child's
region, never lets a child overwrite a resource owned outside its region,
validates every resource, ignores replays (idempotent by origin region and
sequence) and stale versions, and reports an outcome per change.

Example::

    province = Federation(province_repo, "420000")
    city = Federation(city_repo, "420100")
    changes, cursor = city.export_changes(0, limit=100)
    report = province.import_from_child(city_node_principal, "420100", changes)
    assert report.refused == 0
    down, _ = province.export_changes(0)
    city.import_from_parent(down)        # the province's own resources reach the city
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from catalog_registry.access import is_admin
from catalog_registry.model import Change, Resource
from catalog_registry.repository import CatalogRepository, region_of, region_within
from catalog_registry.validation import region_violations, validate_spec
from zhida.auth.principal import Principal, Role
from zhida.errors import FieldViolation, InvalidArgument, PermissionDenied

MAX_PAGE = 1000


class ImportOutcome(enum.Enum):
    IMPORTED = "imported"
    REPLAYED = "replayed"  # this (origin region, sequence) was imported before; nothing written
    STALE = "stale"  # we already hold this version or a newer one; nothing written
    REFUSED = "refused"  # out of the child's region, invalid, or owned elsewhere


@dataclass(frozen=True, slots=True)
class ImportResult:
    origin_region: str
    origin_sequence: int
    code: str
    outcome: ImportOutcome
    reason: str = ""  # for REFUSED: OUT_OF_REGION, ORIGIN_OUT_OF_REGION, INVALID_RESOURCE, …


@dataclass(frozen=True, slots=True)
class ImportReport:
    results: tuple[ImportResult, ...]

    def count(self, outcome: ImportOutcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    @property
    def imported(self) -> int:
        return self.count(ImportOutcome.IMPORTED)

    @property
    def refused(self) -> int:
        return self.count(ImportOutcome.REFUSED)


class Federation:
    """The catalogue side of one exchange node at ``node_region``."""

    def __init__(
        self,
        repo: CatalogRepository,
        node_region: str,
        *,
        listeners: Iterable[Callable[[Resource], None]] = (),
    ) -> None:
        problems = region_violations(node_region, "node_region")
        if problems:
            raise InvalidArgument(
                "invalid node region", reason="INVALID_REGION_CODE", violations=problems
            )
        self._repo = repo
        self.node_region = node_region
        self._listeners = list(listeners)  # e.g. MatchIndex.sync, as on CatalogRegistry

    def export_changes(self, since_cursor: int, limit: int = 100) -> tuple[list[Change], int]:
        """Changes after ``since_cursor`` (at most ``limit``) and the cursor to resume from."""
        bad: list[FieldViolation] = []
        if since_cursor < 0:
            bad.append(FieldViolation("since_cursor", "must be 0 or a cursor we returned"))
        if not 1 <= limit <= MAX_PAGE:
            bad.append(FieldViolation("limit", f"must be 1..{MAX_PAGE}"))
        if bad:
            raise InvalidArgument(
                "invalid change-feed request", reason="INVALID_CURSOR", violations=bad
            )
        out = [
            Change(
                c.sequence,
                c.resource,
                c.origin_region or self.node_region,
                c.sequence if c.origin_sequence is None else c.origin_sequence,
            )
            for c in self._repo.changes_since(since_cursor, limit)
        ]
        return out, (out[-1].sequence if out else since_cursor)

    def import_from_child(
        self, principal: Principal, child_region: str, changes: Iterable[Change]
    ) -> ImportReport:
        """Apply a child's exported changes; see the module docstring for the rules."""
        self._check_child(principal, child_region)

        def below(code: str) -> bool:
            return region_within(code, child_region)

        ordered = sorted(changes, key=lambda c: c.sequence)
        return ImportReport(tuple(self._import_one(below, child_region, c) for c in ordered))

    def import_from_parent(self, changes: Iterable[Change]) -> ImportReport:
        """Apply changes pulled from the parent node's feed: upper-level resources,
        visible downward (数据直达基层).

        Only resources of a region strictly above this node's — the national,
        province and city resources on its way to the root — are taken, with the
        same checks as :meth:`import_from_child` (valid, idempotent, never stale,
        never over a resource owned by this node's region or below). The rest of
        the parent's feed (this node's own changes coming back, a sibling's) is
        REFUSED ``OUT_OF_REGION`` / ``ORIGIN_OUT_OF_REGION`` without a write. The
        caller is this node's own sync task, which reached the parent over mTLS.
        """
        mine = region_of(self.node_region)

        def above(code: str) -> bool:
            return code != self.node_region and region_of(code).contains(mine)

        ordered = sorted(changes, key=lambda c: c.sequence)
        return ImportReport(tuple(self._import_one(above, "", c) for c in ordered))

    def _check_child(self, principal: Principal, child_region: str) -> None:
        problems = region_violations(child_region, "child_region")
        if problems:
            raise InvalidArgument(
                "invalid child region", reason="INVALID_REGION_CODE", violations=problems
            )
        if region_of(child_region).parent != self.node_region:
            raise InvalidArgument(
                f"{child_region} is not directly below this node's region {self.node_region}",
                reason="NOT_A_CHILD_REGION",
                violations=[FieldViolation("child_region", "must be one level below this node")],
            )
        node_ok = principal.role is Role.NODE and principal.region_code == child_region
        if not (node_ok or is_admin(principal)):
            raise PermissionDenied(
                f"only the {child_region} node may push its changes",
                reason="NOT_CHILD_NODE",
                metadata={"child_region": child_region},
            )

    def _import_one(
        self, accepts: Callable[[str], bool], sender_region: str, change: Change
    ) -> ImportResult:
        """Import one change whose origin and region ``accepts`` (valid region codes)."""
        origin = change.origin_region or sender_region
        origin_seq = change.sequence if change.origin_sequence is None else change.origin_sequence
        resource = change.resource

        def result(outcome: ImportOutcome, reason: str = "") -> ImportResult:
            return ImportResult(origin, origin_seq, resource.key, outcome, reason)

        if region_violations(origin, "origin_region") or not accepts(origin):
            return result(ImportOutcome.REFUSED, "ORIGIN_OUT_OF_REGION")
        if region_violations(resource.region_code, "region_code") or not accepts(
            resource.region_code
        ):
            return result(ImportOutcome.REFUSED, "OUT_OF_REGION")
        if validate_spec(resource.spec) or resource.version < 1:
            return result(ImportOutcome.REFUSED, "INVALID_RESOURCE")
        if self._repo.was_imported(origin, origin_seq):
            return result(ImportOutcome.REPLAYED)
        current = self._repo.get_resource(resource.key)
        if current is not None:
            if not accepts(current.region_code):
                return result(ImportOutcome.REFUSED, "CODE_OWNED_ELSEWHERE")
            if current.version >= resource.version:
                return result(ImportOutcome.STALE)
        # The level follows from the region code; never trust the sender's.
        local = dataclasses.replace(resource, level=region_of(resource.region_code).level)
        written = self._repo.import_resource(
            local,
            origin_region=origin,
            origin_sequence=origin_seq,
            expected_version=None if current is None else current.version,
        )
        if not written:
            return result(ImportOutcome.REPLAYED)
        for listener in self._listeners:
            listener(local)
        return result(ImportOutcome.IMPORTED)
