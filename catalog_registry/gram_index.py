"""Keyword search from memory: the gram index of the SQL store, held by each node process.

:class:`GramIndex` holds what keyword search needs of every current resource
version; :meth:`GramIndex.search` ranks a
:class:`~catalog_registry.repository.ResourceQuery` over it exactly as
:mod:`catalog_registry.sql_search` does (the algorithm:
:mod:`catalog_registry.gram_search`) and returns the page's ``(score, code
key)`` rows; the SQL store then reads only those rows
(:mod:`catalog_registry.sql_gram_index` builds the index from the tables and
keeps it current from the change feed).

What it holds: per resource a dense id (in code order when built) with its
code key, version and filter columns, and the ids per provider and per
region; per gram its postings as ids sorted by code (4 bytes each), and for
grams in at least one resource of :data:`DENSE_SHARE` also a bitmap (one bit
per id, no more memory than the postings), so that a membership test is one
lookup. 100,000 synthetic resources, 7.2 million postings: about 50 MB.
Changes (:meth:`GramIndex.put`) keep every posting list in code order. Not
thread-safe: one lock around it.

Example::

    index = GramIndex.build(entries, postings)        # code order; see sql_gram_index
    rows = index.search(ResourceQuery(grams=("营业", "执照"), limit=21))
    # [(1000, 1010010001000001), ...]
"""

from __future__ import annotations

import functools
import itertools
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, cast

from catalog_registry import gram_search
from catalog_registry.model import ResourceStatus, ShareType
from catalog_registry.repository import ResourceQuery
from catalog_registry.sql_filters import FilterShape

__all__ = ["BISECT_COST", "DENSE_SHARE", "Entry", "GramIndex"]

# A gram in at least 1/DENSE_SHARE of the resources (and DENSE_MIN of them) gets a bitmap:
# then the bitmap costs at most as much memory as its postings.
DENSE_SHARE = 32
DENSE_MIN = 64
# A binary search in a gram's postings costs about as much as this many insertions into
# a set of them: fewer lookups than postings / BISECT_COST, and searching is cheaper.
BISECT_COST = 40
_STATUS = {s.value: i for i, s in enumerate(ResourceStatus)}
_STATE, _LEVEL, _SHARE_TYPE = 0, 1, 2  # the columns counted in GramIndex._values
_SHARE = {s.value: i for i, s in enumerate(ShareType)}

_DIGITS = bytes.maketrans(b"\x00\x01", b"01")
Row = tuple[int, int]  # (score, code key)
Test = Callable[[int], object]  # truthy when the id is in the gram's postings


@dataclass(frozen=True, slots=True)
class Entry:
    """What the index keeps of a resource: its key, version and filter columns."""

    code_key: int
    version: int
    status: str  # ResourceStatus value
    provider_code: str
    region_code: str
    level: int
    share_type: str  # ShareType value


class GramIndex:
    """Postings and filter columns of every current resource version, in memory."""

    def __init__(self) -> None:
        self._code: list[int] = []  # id -> code key
        self._ids: dict[int, int] = {}  # code key -> id
        self._version: list[int] = []
        self._status = bytearray()
        self._level = bytearray()
        self._share = bytearray()
        self._provider: list[str] = []
        self._region: list[str] = []
        self._postings: dict[str, array[int]] = {}  # gram key -> ids sorted by code
        self._bitmaps: dict[str, bytearray] = {}  # bit i: id i has the gram
        self._by_code = self._code.__getitem__  # sort key of an id in the postings
        self._by_provider: dict[str, list[int]] = {}  # ids of each provider, any order
        self._by_region: dict[str, list[int]] = {}
        self._region_codes: list[str] | None = []  # sorted keys of _by_region; None: stale
        self._values: Counter[tuple[int, int]] = Counter()  # (column, value) -> ids with it

    @classmethod
    def build(
        cls, entries: Iterable[Entry], postings: Iterable[tuple[str, Iterable[int]]]
    ) -> GramIndex:
        """The index of ``entries`` (in code order) with ``postings``: (gram key, its code
        keys in code order) per gram; postings of keys not among the entries are skipped."""
        index = cls()
        last = -1
        for entry in entries:
            if entry.code_key <= last:
                raise ValueError("entries must come in increasing code order")
            last = entry.code_key
            index._append(entry)
        known = index._ids.get
        for gram, keys in postings:
            ids = list(map(known, keys))
            if None in ids:  # written after the entries were read: the feed replays it
                ids = [i for i in ids if i is not None]
            if ids:
                index._postings[gram] = array("i", cast(list[int], ids))
        dense = index._dense_at()
        for gram, found in index._postings.items():
            if len(found) >= dense:
                index._bitmaps[gram] = index._bitmap(found)
        return index

    def __len__(self) -> int:
        return len(self._code)

    def version(self, key: int) -> int | None:
        """The version of resource ``key`` the index holds; None when it has none."""
        i = self._ids.get(key)
        return None if i is None else self._version[i]

    def postings(self, gram: str) -> int:
        """How many resources have ``gram`` (a stored gram key)."""
        found = self._postings.get(gram)
        return 0 if found is None else len(found)

    # -- changes -------------------------------------------------------------------------
    def put(self, entry: Entry, old_grams: Iterable[str], new_grams: Iterable[str]) -> None:
        """Index a new resource or a new version: its filter columns, and postings moved
        from ``old_grams`` (those of the version held before) to ``new_grams``.

        Idempotent (a posting already there or already gone is left alone), so
        changes may be replayed over a state that already has some of them.
        """
        i = self._ids.get(entry.code_key)
        if i is None:
            i = self._append(entry)
        else:
            self._set(i, entry)
        new = set(new_grams)
        for gram in set(old_grams) - new:
            self._remove(gram, i)
        for gram in new:
            self._add(gram, i)

    def _append(self, entry: Entry) -> int:
        i = len(self._code)
        self._code.append(entry.code_key)
        self._ids[entry.code_key] = i
        self._version.append(0)
        self._status.append(0)
        self._level.append(0)
        self._share.append(0)
        self._provider.append("")
        self._region.append("")
        if i % 8 == 0:  # one more byte for every bitmap
            for bitmap in self._bitmaps.values():
                bitmap.append(0)
        self._set(i, entry, fresh=True)
        return i

    def _set(self, i: int, entry: Entry, *, fresh: bool = False) -> None:
        self._version[i] = entry.version
        columns = (self._status, self._level, self._share)
        values = (_STATUS[entry.status], entry.level, _SHARE[entry.share_type])
        for which, (column, value) in enumerate(zip(columns, values, strict=True)):
            if not fresh:
                self._values[which, column[i]] -= 1
            self._values[which, value] += 1
            column[i] = value
        provider, region = entry.provider_code, entry.region_code
        if self._provider[i] != provider:
            _discard(self._by_provider, self._provider[i], i)
            self._by_provider.setdefault(provider, []).append(i)
            self._provider[i] = sys.intern(provider)  # a few thousand, each held once
        if self._region[i] != region:
            _discard(self._by_region, self._region[i], i)
            if region not in self._by_region:
                self._region_codes = None
            self._by_region.setdefault(region, []).append(i)
            self._region[i] = sys.intern(region)

    def _find(self, found: array[int], i: int) -> int:
        """Position of id ``i`` in postings ``found`` (sorted by code), or -1."""
        at = bisect_left(found, self._code[i], key=self._by_code)
        return at if at < len(found) and found[at] == i else -1

    def _add(self, gram: str, i: int) -> None:
        found = self._postings.get(gram)
        if found is None:
            found = self._postings[gram] = array("i")
        at = bisect_left(found, self._code[i], key=self._by_code)
        if at < len(found) and found[at] == i:
            return
        found.insert(at, i)
        bitmap = self._bitmaps.get(gram)
        if bitmap is not None:
            bitmap[i >> 3] |= 1 << (i & 7)
        elif len(found) >= self._dense_at():
            self._bitmaps[gram] = self._bitmap(found)

    def _remove(self, gram: str, i: int) -> None:
        found = self._postings.get(gram)
        at = -1 if found is None else self._find(found, i)
        if found is None or at < 0:
            return
        del found[at]
        bitmap = self._bitmaps.get(gram)
        if bitmap is not None:
            bitmap[i >> 3] &= ~(1 << (i & 7)) & 0xFF
        if not found:
            del self._postings[gram]
            self._bitmaps.pop(gram, None)

    def _dense_at(self) -> int:
        return max(DENSE_MIN, len(self._code) // DENSE_SHARE)

    def _bitmap(self, found: array[int]) -> bytearray:
        """Bit i set for every id i in ``found``; room for every id (C loops only)."""
        size = len(self._code) // 8 + 1
        flags = bytearray(size * 8)  # one byte per id, then packed: '0'/'1' digits, base 2
        deque(map(flags.__setitem__, found, itertools.repeat(1)), maxlen=0)
        digits = flags.translate(_DIGITS)[::-1]
        return bytearray(int(digits, 2).to_bytes(size, "little"))

    # -- what the search reads (catalog_registry.gram_search) -----------------------------
    def search(self, query: ResourceQuery) -> list[Row]:
        """One page of ``query`` (which has grams): (score, code key) in result order."""
        return gram_search.rank(self, query)

    @property
    def codes(self) -> list[int]:
        """Code key by id (read-only)."""
        return self._code

    def posting_list(self, gram: str) -> array[int]:
        """The ids with ``gram``, in code order (read-only); KeyError for an unknown gram."""
        return self._postings[gram]

    def start_after(self, found: array[int], key: int) -> int:
        """Position in posting list ``found`` of its first id with a code key above ``key``."""
        return bisect_right(found, key, key=self._by_code)

    def test(self, gram: str, tests: int) -> Test:
        """Membership in ``gram``'s postings for about ``tests`` lookups: a bitmap when
        there is one, else a set, or binary search when the set would cost more."""
        bitmap = self._bitmaps.get(gram)
        if bitmap is not None:
            return lambda i: bitmap[i >> 3] >> (i & 7) & 1
        found = self._postings[gram]
        if tests * BISECT_COST < len(found):
            return lambda i: self._find(found, i) >= 0
        return set(found).__contains__

    def narrowed(
        self, shape: FilterShape, values: dict[str, Any], cap: int
    ) -> Collection[int] | None:
        """The ids of the provider or region asked for, if at most ``cap`` (else None)."""
        best: Collection[int] | None = None
        if shape.provider:
            best = self._by_provider.get(values["provider"], ())
        if shape.region == "eq":
            region = self._by_region.get(values["region"], ())
            best = region if best is None or len(region) < len(best) else best
        elif shape.region == "range" and (best is None or len(best) > cap):
            if self._region_codes is None:
                self._region_codes = sorted(self._by_region)
            codes = self._region_codes
            low = bisect_left(codes, values["region_lo"])
            high = bisect_right(codes, values["region_hi"])
            groups = [self._by_region[c] for c in codes[low:high]]
            if sum(map(len, groups)) <= cap:
                best = set().union(*groups)
        return best if best is not None and len(best) <= cap else None

    def none_pass(self, shape: FilterShape, values: dict[str, Any]) -> bool:
        """True when no resource has the level, share type or any status asked for."""
        has = self._values
        return (
            (shape.level and not has[_LEVEL, values["level"]])
            or (shape.share and not has[_SHARE_TYPE, _SHARE[values["share"]]])
            or not any(has[_STATE, _STATUS[s]] for s in values["statuses"])
        )

    def filter(self, shape: FilterShape, values: dict[str, Any]) -> Test | None:
        """The query's filters as one predicate on ids (None: every id passes)."""
        checks: list[Test] = []
        if shape.provider:
            provider, providers = values["provider"], self._provider
            checks.append(lambda i: providers[i] == provider)
        if shape.region == "eq":
            region, regions = values["region"], self._region
            checks.append(lambda i: regions[i] == region)
        elif shape.region == "range":
            low, high, regions = values["region_lo"], values["region_hi"], self._region
            checks.append(lambda i: low <= regions[i] <= high)
        if shape.level:
            level, levels = values["level"], self._level
            checks.append(lambda i: levels[i] == level)
        if shape.share:
            share, shares = _SHARE[values["share"]], self._share
            checks.append(lambda i: shares[i] == share)
        statuses = bytes(sorted({_STATUS[s] for s in values["statuses"]}))
        if len(statuses) < len(_STATUS):
            status = self._status
            checks.append(lambda i: status[i] in statuses)
        if not checks:
            return None
        return functools.reduce(_both, checks)


def _discard(groups: dict[str, list[int]], group: str, i: int) -> None:
    members = groups.get(group)
    if members is not None and i in members:  # short lists: a provider's, a region's
        members.remove(i)


def _both(first: Test, second: Test) -> Test:
    return lambda i: first(i) and second(i)
