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

Negative-list entries (负面清单) travel with their resource: adding or removing
one appends a change of the resource's current version to the feed, and every
exported change carries the resource's entries as they are at export
(``Change.negative_entries``, with their legal basis). An import replaces the
copy's entries with them — with a new version, or alone when the version is
the one held and the entries differ (a change of the copy's current version
appended to this node's feed, so they travel on) — so every node holding a
copy holds its entries, and removals reach it too. Entries arrive in feed
order from the one node a copy comes from, so a later export never carries
older entries; a replay writes nothing. Entries naming another resource,
without a legal basis or listing one item tuple twice refuse the change
(``INVALID_NEGATIVE_ENTRY``).

Example::

    province = Federation(province_repo, "420000")
    city = Federation(city_repo, "420100")
    changes, cursor = city.export_changes(0, limit=100)    # each with its negative entries
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
from catalog_registry.model import Change, NegativeEntry, Resource
from catalog_registry.repository import CatalogRepository, region_of, region_within
from catalog_registry.validation import check_negative_entry, region_violations, validate_spec
from zhida.auth.principal import Principal, Role
from zhida.errors import FieldViolation, InvalidArgument, PermissionDenied

MAX_PAGE = 1000


class ImportOutcome(enum.Enum):
    IMPORTED = "imported"  # a new version, or new negative entries of the version held
    REPLAYED = "replayed"  # this (origin region, sequence) was imported before; nothing written
    STALE = "stale"  # we hold a newer version, or this one with these entries; nothing written
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
        changes = self._repo.changes_since(since_cursor, limit)
        # Read after the changes: entries at least as new as any change of the page.
        entries = self._repo.negative_entries_of(_keys(changes))
        out = [
            Change(
                c.sequence,
                c.resource,
                c.origin_region or self.node_region,
                c.sequence if c.origin_sequence is None else c.origin_sequence,
                tuple(entries[c.resource.key]),
            )
            for c in changes
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
        if not _sound_entries(resource.key, change.negative_entries):
            return result(ImportOutcome.REFUSED, "INVALID_NEGATIVE_ENTRY")
        if self._repo.was_imported(origin, origin_seq):
            return result(ImportOutcome.REPLAYED)
        current = self._repo.get_resource(resource.key)
        if current is not None and not accepts(current.region_code):
            return result(ImportOutcome.REFUSED, "CODE_OWNED_ELSEWHERE")
        entries = change.negative_entries
        held = frozenset(self._repo.negative_entries(resource.key))
        new_entries = None if held == frozenset(entries) else entries
        if current is not None and current.version >= resource.version:
            if current.version > resource.version or new_entries is None:
                return result(ImportOutcome.STALE)
            written = self._repo.import_negative_entries(
                resource.key,
                new_entries,
                version=current.version,
                origin_region=origin,
                origin_sequence=origin_seq,
            )
            return result(ImportOutcome.IMPORTED if written else ImportOutcome.REPLAYED)
        # The level follows from the region code; never trust the sender's.
        local = dataclasses.replace(resource, level=region_of(resource.region_code).level)
        written = self._repo.import_resource(
            local,
            origin_region=origin,
            origin_sequence=origin_seq,
            expected_version=None if current is None else current.version,
            negative_entries=new_entries,
        )
        if not written:
            return result(ImportOutcome.REPLAYED)
        for listener in self._listeners:
            listener(local)
        return result(ImportOutcome.IMPORTED)


def _keys(changes: Iterable[Change]) -> list[str]:
    return list(dict.fromkeys(c.resource.key for c in changes))


def _sound_entries(code: str, entries: Iterable[NegativeEntry]) -> bool:
    """Entries of resource ``code``, each with a legal basis, no item tuple twice."""
    seen: set[tuple[str, ...]] = set()
    for entry in entries:
        if entry.resource_code.text != code or entry.item_names in seen:
            return False
        seen.add(entry.item_names)
        try:
            check_negative_entry(entry.legal_basis, entry.item_names)
        except InvalidArgument:
            return False
    return True
