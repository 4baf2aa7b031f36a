"""The negative list (负面清单): what may never be released, each entry with its legal basis.

:class:`NegativeList` keeps an in-memory index over the repository's entries so
that :meth:`NegativeList.may_release` is two dict lookups (a whole-resource
entry blocks every item of the resource). Adding and removing entries is for
admins only and writes through to the repository; ``reload()`` rebuilds the
index when another process changed the entries.

Listing an item of an already published resource takes effect at once:
``may_release`` refuses it, and the registry accepts the resource's next
update only with that item marked not shared.

On a node (``node_region`` given) an entry is changed only at its resource's
own node: the entries of a copy (a resource whose latest change came from
another node by catalogue federation, or of a region outside the node's)
arrive with the copy and are refused here (``FailedPrecondition`` reason
``IMPORTED_RESOURCE``, metadata ``home_region``: where to change them).

Example::

    lst = NegativeList(repo, clock)
    lst.add(admin, "1-01-001-0009-000001", ("指纹",), "《个人信息保护法》第二十八条")
    d = lst.may_release("1-01-001-0009-000001", "指纹")
    assert not d.allowed and "第二十八条" in d.legal_basis
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from catalog_registry.access import require_admin, require_home
from catalog_registry.model import NegativeEntry, Resource, ResourceCode, ResourceSpec, ShareType
from catalog_registry.repository import CatalogRepository
from catalog_registry.validation import check_negative_entry
from zhida.auth.principal import Principal
from zhida.errors import FieldViolation, InvalidArgument, NotFound


@dataclass(frozen=True, slots=True)
class Decision:
    """May this item be released? When not, the legal basis that forbids it."""

    allowed: bool
    legal_basis: str = ""
    entry: NegativeEntry | None = None


ALLOW = Decision(True)


class NegativeList:
    """Index over negative-list entries with O(1) release decisions."""

    def __init__(
        self,
        repo: CatalogRepository,
        clock: Callable[[], datetime],
        *,
        node_region: str | None = None,
    ) -> None:
        self._repo = repo
        self._clock = clock
        self.node_region = node_region  # None: no node (library use), every entry local
        self._lock = threading.Lock()
        self._whole: dict[str, Decision] = {}
        self._items: dict[tuple[str, str], Decision] = {}
        self.reload()

    def reload(self) -> None:
        """Rebuild the index from the repository."""
        whole: dict[str, Decision] = {}
        items: dict[tuple[str, str], Decision] = {}
        for entry in self._repo.negative_entries():
            _index_entry(entry, whole, items)
        with self._lock:
            self._whole, self._items = whole, items

    def may_release(self, resource_code: str | ResourceCode, item_name: str) -> Decision:
        """Decision for one item of one resource; ``resource_code`` in canonical text."""
        key = resource_code.text if isinstance(resource_code, ResourceCode) else resource_code
        decision = self._whole.get(key)
        if decision is None:
            decision = self._items.get((key, item_name))
        return ALLOW if decision is None else decision

    def add(
        self,
        principal: Principal,
        resource_code: str | ResourceCode,
        item_names: Sequence[str],
        legal_basis: str,
    ) -> NegativeEntry:
        """List a resource (``item_names`` empty) or some of its items; admins only."""
        require_admin(principal, "change the negative list")
        code = _code(resource_code)
        check_negative_entry(legal_basis, item_names)
        resource = self._repo.get_resource(code.text)
        if resource is None:
            raise NotFound(
                f"resource {code.text} not found",
                reason="RESOURCE_NOT_FOUND",
                metadata={"code": code.text},
            )
        self._require_home(resource)
        known = {item.name for item in resource.items}
        unknown = [
            FieldViolation(f"item_names[{i}]", f"{name!r} is not an item of {code.text}")
            for i, name in enumerate(item_names)
            if name not in known
        ]
        if unknown:
            raise InvalidArgument(
                "unknown data items", reason="INVALID_NEGATIVE_ENTRY", violations=unknown
            )
        entry = NegativeEntry(
            code, tuple(item_names), legal_basis, principal.subject, self._clock()
        )
        self._repo.add_negative_entry(entry)
        self._rebuild(code.text)
        return entry

    def remove(
        self,
        principal: Principal,
        resource_code: str | ResourceCode,
        item_names: Sequence[str] = (),
    ) -> None:
        """Delete the entry listing exactly these items (the whole resource if empty)."""
        require_admin(principal, "change the negative list")
        code = _code(resource_code)
        self._require_home(self._repo.get_resource(code.text))
        if not self._repo.remove_negative_entry(code.text, tuple(item_names)):
            raise NotFound(
                f"no negative-list entry for {code.text} {list(item_names)}",
                reason="NEGATIVE_ENTRY_NOT_FOUND",
                metadata={"code": code.text},
            )
        self._rebuild(code.text)

    def _require_home(self, resource: Resource | None) -> None:
        if resource is not None:
            require_home(
                self._repo,
                self.node_region,
                resource,
                "its negative-list entries travel with it: change them",
            )

    def list(self, resource_code: str | ResourceCode | None = None) -> list[NegativeEntry]:
        key = None if resource_code is None else _code(resource_code).text
        return self._repo.negative_entries(key)

    def _rebuild(self, code: str) -> None:
        """Recompute the index for one resource (entries may overlap)."""
        with self._lock:
            whole = dict(self._whole)
            items = {k: v for k, v in self._items.items() if k[0] != code}
            whole.pop(code, None)
            for entry in self._repo.negative_entries(code):
                _index_entry(entry, whole, items)
            self._whole, self._items = whole, items


def _index_entry(
    entry: NegativeEntry, whole: dict[str, Decision], items: dict[tuple[str, str], Decision]
) -> None:
    decision = Decision(False, entry.legal_basis, entry)
    code = entry.resource_code.text
    if entry.whole_resource:
        whole.setdefault(code, decision)
    for name in entry.item_names:
        items.setdefault((code, name), decision)


def _code(value: str | ResourceCode) -> ResourceCode:
    return value if isinstance(value, ResourceCode) else ResourceCode.parse(value, "resource_code")


def shareable_negative_items(
    spec: ResourceSpec, entries: Sequence[NegativeEntry]
) -> list[FieldViolation]:
    """Violations for every negative-listed part the spec still offers for sharing.

    A whole-resource entry requires the resource to be 不予共享; an item entry
    requires that item's effective share type to be 不予共享.
    """
    out: list[FieldViolation] = []
    blocked: dict[str, str] = {}
    for entry in entries:
        if entry.whole_resource and spec.share_type is not ShareType.NOT_SHARED:
            out.append(
                FieldViolation(
                    "share_type",
                    f"the whole resource is on the negative list ({entry.legal_basis}); "
                    "it must be not_shared",
                )
            )
        for name in entry.item_names:
            blocked.setdefault(name, entry.legal_basis)
    for i, item in enumerate(spec.items):
        effective = item.share_type or spec.share_type
        if item.name in blocked and effective is not ShareType.NOT_SHARED:
            out.append(
                FieldViolation(
                    f"items[{i}].share_type",
                    f"{item.name} is on the negative list ({blocked[item.name]}); "
                    "it must be not_shared",
                )
            )
    return out
