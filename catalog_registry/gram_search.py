"""Ranking a keyword query over a :class:`~catalog_registry.gram_index.GramIndex`.

:func:`rank` returns exactly what :mod:`catalog_registry.sql_search` returns
for a :class:`~catalog_registry.repository.ResourceQuery` with grams (score
``1000 * count // n`` of the ``n`` query grams a resource has, order score
then code, keyset after the page token), with the same plan, but each
membership test is a set or bitmap lookup instead of an index probe, and
candidates stop being tested as soon as they cannot enter the page:

1. **Filter first** when the provider or region asked for has few resources
   (at most :data:`FILTER_FIRST_WORK` membership tests for all of them):
   score just those. Nothing at all when no resource has the level, share
   type or status asked for.
2. **All m grams** (the top level): walk the rarest gram's postings in code
   order, testing each row against the filters and the other grams; the
   rows come in final order, so the walk stops after one page.
3. **Lower levels**, while the page is not full: scoring the filter's rows
   when that takes fewer membership tests than the query's grams have
   postings; otherwise level by level. A row with at least ``lo``
   of the ``m`` grams has one of the ``m - lo + 1`` rarest (pigeonhole).
   Count those postings (a step takes as many rare grams as its budget
   allows, from :data:`POSTING_BUDGET`, four times more each step), then take
   the candidates by that count, highest first. The best rows so far sit in
   a heap; a candidate is tested against the other grams, rarest first, only
   while it can still beat the heap's worst row (on a tie of counts it needs
   a smaller code), so most candidates cost one or two lookups.

Membership tests are made per query as needed: a gram's bitmap when it has
one, else a set of its postings, or a binary search in them when few lookups
are expected (:data:`catalog_registry.gram_index.BISECT_COST`).

Example::

    rows = rank(index, ResourceQuery(grams=("营业", "执照"), limit=21))
    # [(1000, 1010010001000001), ...]   (score, code key)
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Collection
from itertools import islice
from typing import TYPE_CHECKING

from catalog_registry.repository import ResourceQuery
from catalog_registry.sql_filters import FilterShape, Keyset, gram_key, shape_of

if TYPE_CHECKING:
    from catalog_registry.gram_index import GramIndex, Test

__all__ = ["FILTER_FIRST_WORK", "POSTING_BUDGET", "rank"]

# Postings the first lower-level step may count; each next step four times as many.
POSTING_BUDGET = 20_000
# A filter leaving ids whose scoring takes at most this many membership tests (ids times
# query grams) is served filter first: those ids scored, not the grams' postings walked.
FILTER_FIRST_WORK = 8_000

Row = tuple[int, int]  # (score, code key)
_LEARN = 16  # candidates of a band tested in df order before the order adapts
_WALK_PROBE = 64  # rows the top-level walk takes before choosing its tests for the rest


def rank(index: GramIndex, query: ResourceQuery) -> list[Row]:
    """One page of ``query`` (which has grams): (score, code key) in result order."""
    if query.limit <= 0 or not query.grams:
        raise ValueError("the gram index answers keyword queries only")
    dfs: dict[str, int] = {}
    for gram in {gram_key(g) for g in query.grams}:
        df = index.postings(gram)
        if df:
            dfs[gram] = df
    if not dfs:
        return []
    run = _Ranking(index, query, sorted(dfs, key=lambda g: (dfs[g], g)))
    return run.rank([dfs[g] for g in run.present])


class _Ranking:
    """One query's ranking: its grams (rarest first), filters and membership tests."""

    def __init__(self, index: GramIndex, query: ResourceQuery, present: list[str]) -> None:
        self.index = index
        self.present = present
        self.n, self.m, self.limit = len(set(query.grams)), len(present), query.limit
        self.keyset = Keyset(query, self.m, self.n)
        self.shape, self.values = shape_of(query)
        self.accept = index.filter(self.shape, self.values)
        self.codes = index.codes
        self.examine: Test | None = None  # the filters still to check on band candidates
        self._tests: dict[str, Test] = {}

    def test(self, gram: str, lookups: int) -> Test:
        found = self._tests.get(gram)
        if found is None:
            found = self._tests[gram] = self.index.test(gram, lookups)
        return found

    def rank(self, dfs: list[int]) -> list[Row]:
        m, n, limit, present = self.m, self.n, self.limit, self.present
        if self.index.none_pass(self.shape, self.values):
            return []
        few = self.index.narrowed(self.shape, self.values, sum(dfs) // m)
        if few is not None and len(few) * m <= FILTER_FIRST_WORK:
            return self._filter_first(few, self.keyset.top, limit)
        out: list[Row] = []
        hi = self.keyset.top
        if hi == m:
            out += self._walk()
            hi = m - 1
        if few is not None and len(out) < limit and hi >= 1:
            # scoring the filter's rows costs less than counting the grams' postings
            return out + self._filter_first(few, hi, limit - len(out))
        budget = POSTING_BUDGET
        # Only a narrowing filter is worth applying to every posting counted; published
        # among the statuses (nearly every row) is checked on the candidates examined.
        accept, self.examine = self.accept, None
        if self.shape == FilterShape():
            accept, self.examine = None, self.accept
        counts: Counter[int] = Counter()  # id -> how many of the p rarest grams it has
        counted = 0
        while len(out) < limit and hi >= 1:
            p = m - hi + 1
            while p < m and sum(dfs[: p + 1]) <= budget:
                p += 1
            budget *= 4
            for gram in present[counted:p]:
                found = self.index.posting_list(gram)
                counts.update(found if accept is None else filter(accept, found))
            counted = p
            lo = m - p + 1
            band = self._band(counts, present[p:], self.keyset.values(lo, hi), limit - len(out))
            out += [(1000 * count // n, key) for count, key in band]
            hi = lo - 1
        return out

    def _filter_first(self, few: Collection[int], hi: int, need: int) -> list[Row]:
        """The best ``need`` rows of at most ``hi`` grams among those a selective filter
        leaves (``few``), each scored gram by gram."""
        tests = [self.test(g, len(few)) for g in self.present]
        allowed = self.keyset.values(1, hi)
        hi, eq, after = allowed["hi"], allowed["eq"], allowed["after"]
        codes, accept = self.codes, self.accept
        found: list[tuple[int, int]] = []
        for i in few:
            if accept is not None and not accept(i):
                continue
            count = sum(1 for test in tests if test(i))
            if count and (count <= hi or (count == eq and codes[i] > after)):
                found.append((-count, codes[i]))
        found.sort()
        return [(1000 * -negative // self.n, key) for negative, key in found[:need]]

    def _walk(self) -> list[Row]:
        """Rows with every present gram, in code order: the rarest gram's postings walked.

        A page often fills within its first few dozen postings: the other grams are
        first tested by binary search, and only past ``_WALK_PROBE`` rows walked by the
        cheapest test for the rest of the walk."""
        first = self.index.posting_list(self.present[0])
        start = 0
        if self.keyset.eq == self.m:
            start = self.index.start_after(first, self.keyset.key)
        rest = self.present[1:]
        tests: list[Test | None] = [None] * len(rest)
        codes, accept, score = self.codes, self.accept, 1000 * self.m // self.n
        probing = len(first) - start > _WALK_PROBE
        lookups = _WALK_PROBE if probing else len(first) - start
        make = self.index.test if probing else self.test
        out: list[Row] = []
        for walked, i in enumerate(islice(first, start, None)):
            if probing and walked == _WALK_PROBE:  # a long walk: the cheapest tests from now
                probing, lookups, make = False, len(first) - start, self.test
                tests = [None] * len(rest)
            if accept is not None and not accept(i):
                continue
            for j, test in enumerate(tests):
                if test is None:
                    test = tests[j] = make(rest[j], lookups)
                if not test(i):
                    break
            else:
                out.append((score, codes[i]))
                if len(out) == self.limit:
                    break
        return out

    def _band(
        self, counts: Counter[int], rest: list[str], allowed: dict[str, int], need: int
    ) -> list[tuple[int, int]]:
        """Up to ``need`` rows with ``allowed["lo"]``..``["hi"]`` grams (or ``["eq"]`` after
        ``["after"]``) among the ids in ``counts`` (hits among the rarest grams), the
        ``rest`` of the grams tested one by one: (count, code key), in result order."""
        lo, hi, eq, after = allowed["lo"], allowed["hi"], allowed["eq"], allowed["after"]
        if hi < lo and eq < 0:
            return []
        spare = len(rest)  # grams a candidate may still have
        reach, top = lo - spare, max(hi, eq)  # fewer hits cannot make lo; more exceed top
        by_hits: dict[int, list[int]] = {}
        for i, hits in counts.items():
            if reach <= hits <= top:
                by_hits.setdefault(hits, []).append(i)
        lookups = sum(map(len, by_hits.values()))
        tests: list[Test | None] = [None] * spare
        codes, examine = self.codes, self.examine
        best: list[tuple[int, int]] = []  # (count, -code key) of the best rows; worst first
        for hits in sorted(by_hits, reverse=True):
            if len(best) == need and hits + spare < best[0][0]:
                break
            # Candidates with as many rare hits tend to miss the same grams (one subject's
            # resources): after a few, test the grams they missed most first.
            order, missed = list(range(spare)), [0] * spare
            for seen, i in enumerate(by_hits[hits]):
                if seen == _LEARN:
                    order.sort(key=missed.__getitem__, reverse=True)
                key = codes[i]
                least = lo  # the count the candidate needs to enter the page
                if len(best) == need:
                    count, negative = best[0]
                    least = count if key < -negative else count + 1
                misses = hits + spare - least  # misses allowed before it cannot
                if misses < 0 or (examine is not None and not examine(i)):
                    continue
                count = hits
                for j in order:
                    test = tests[j]
                    if test is None:
                        test = tests[j] = self.test(rest[j], lookups)
                    if test(i):
                        count += 1
                    else:
                        missed[j] += 1
                        misses -= 1
                        if misses < 0:
                            break
                else:
                    if count <= hi or (count == eq and key > after):
                        if len(best) < need:
                            heapq.heappush(best, (count, -key))
                        else:
                            heapq.heapreplace(best, (count, -key))
        return [(count, -negative) for count, negative in sorted(best, reverse=True)]
