"""Keyword search in SQL: :class:`~catalog_registry.repository.ResourceQuery` over the gram index.

The semantics are the repository contract's (score = ``1000 * matched // n``,
order ``score DESC, code ASC``, keyset after the last row); this module makes
them cheap when a query has very common grams (信息, 数据, 业务 occur in half or
all of the catalogue), where the textbook ``GROUP BY code`` over every
posting would touch 100,000 rows. The score depends only on how many of the
query's ``m`` present grams a resource has, so results come level by level,
highest count first:

1. **All m grams** (the top level): walk the postings of the rarest gram in
   code order, probing each row for the other grams and the filters. Rows
   come out in final order, so ``LIMIT`` stops the walk after one page — even
   for "信息", whose posting list is half the catalogue.
2. **Lower levels**, only if the page is not full yet: a resource with at
   least ``t`` of the ``m`` grams has one of the ``m - t + 1`` rarest
   (pigeonhole), so those levels are found exactly among the postings of the
   rare grams, counted over that small candidate set.
3. **Filter first** when a filter (provider, region, level, share type,
   drafts or retired) leaves few resources: score just those.

Probes are correlated scalar subqueries on purpose: PostgreSQL never turns
one into a join, so the plan stays "walk, probe each row" whatever its row
estimates say (a misestimate otherwise makes it hash-join whole tables), and
it does not plan ten-relation joins. Statements are built once per shape with
bind parameters and cached (:mod:`catalog_registry.sql_filters`). Document
frequencies come from ``catalog_gram``, kept in the writing transaction.

Example::

    with database.read() as conn:
        rows = search_keys(conn, ResourceQuery(grams=("营业", "执照"), limit=21))
        # [(1000, 1010010001000001), ...]  (score, code key)
"""

from __future__ import annotations

import functools
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
)

from catalog_registry.models import GramRow, PostingRow
from catalog_registry.repository import ResourceQuery
from catalog_registry.sql_filters import (
    FilterShape,
    Keyset,
    R,
    after_key,
    conditions,
    gram_key,
    narrowing,
    shape_of,
)

_P = cast(Table, PostingRow.__table__)
_G = cast(Table, GramRow.__table__)
_IN_CHUNK = 900  # bound parameter lists (SQLite allows 32766; keep statements small)
# Resources a filter may leave for filter-first scoring, postings of rare grams the
# first level query may gather, and the row count below which a filter without keywords
# is served from its index; see search_keys, _levelled and _filter_only.
FILTER_FIRST_CAP = 2_000
POSTING_BUDGET = 4_000
FILTER_ONLY_CAP = 2_000
_CHAINED = 5  # grams after the rarest the walk probes one by one; the rest in one count
_MAX_LEVELLED_GRAMS = 1000  # scores are distinct per count only while n <= 1000

Row = tuple[int, int]  # (score, code key)
_LIM = bindparam("lim", type_=Integer)


def search_keys(session: Connection, query: ResourceQuery) -> list[Row]:
    """One page of (score, code key), in result order."""
    if query.limit <= 0:
        return []
    shape, values = shape_of(query)
    values["lim"] = query.limit
    if not query.grams:
        return _filter_only(session, query, shape, values)
    grams = sorted({gram_key(g) for g in query.grams})
    n = len(set(query.grams))
    df: dict[str, int] = {}
    for i in range(0, len(grams), _IN_CHUNK):
        df.update(session.execute(_df_stmt(), {"grams": grams[i : i + _IN_CHUNK]}).all())
    present = sorted((g for g in grams if df.get(g, 0) > 0), key=lambda g: (df[g], g))
    if not present:
        return []
    if n > _MAX_LEVELLED_GRAMS:
        return _grouped(session, query, shape, values, present, n)
    keyset = Keyset(query, len(present), n)
    # A filter leaving at most FILTER_FIRST_CAP resources: score just those, counting each
    # gram the cheaper way, through its postings (rarer than the rows) or by probing rows.
    for i in range(_narrowing_count(shape)):
        rows_left = session.scalar(_count_stmt(shape, i), {**values, "cap": FILTER_FIRST_CAP})
        if rows_left < FILTER_FIRST_CAP:
            rare = [g for g in present if df[g] <= rows_left]
            common = present[len(rare) :]
            stmt = _filter_first_stmt(shape, bool(rare), bool(common))
            params = {**values, **keyset.values(1, keyset.top), "rare": rare, "common": common}
            return [(1000 * count // n, key) for key, count in session.execute(stmt, params)]
    return _levelled(session, shape, values, present, [df[g] for g in present], n, keyset)


def _allows(hits: Any, key: Any) -> ColumnElement[bool]:
    """SQL: ``lo <= hits <= hi``, or ``hits = eq`` after the page token's code."""
    upper = or_(hits <= bindparam("hi"), and_(hits == bindparam("eq"), key > bindparam("after")))
    return and_(hits >= bindparam("lo"), upper)


def _filter_only(
    session: Connection, query: ResourceQuery, shape: FilterShape, values: dict[str, Any]
) -> list[Row]:
    after = query.after
    if after is not None and after.score < 0:
        return []
    floor = after is not None and after.score == 0  # every row scores 0: continue after it
    if floor:
        assert after is not None
        values["floor"] = after_key(after.code)
    # SQLite has no histograms: it would serve "half the province" from the region index
    # and sort 50,000 rows. When no filter is selective, walk the table in code order.
    scan = session.dialect.name == "sqlite" and not any(
        session.scalar(_count_stmt(shape, i), {**values, "cap": FILTER_ONLY_CAP}) < FILTER_ONLY_CAP
        for i in range(_narrowing_count(shape))
    )
    return [(0, key) for key in session.scalars(_filter_only_stmt(shape, floor, scan), values)]


def _levelled(
    session: Connection,
    shape: FilterShape,
    values: dict[str, Any],
    present: list[str],
    dfs: list[int],
    n: int,
    keyset: Keyset,
) -> list[Row]:
    m, limit = len(present), values["lim"]
    out: list[Row] = []
    hi = keyset.top
    if hi == m:
        chained = present[1 : 1 + _CHAINED]
        rest = present[1 + len(chained) :]
        floor = keyset.eq == m
        params = {
            **values,
            "g0": present[0],
            "rest": rest,
            "n_rest": len(rest),
            "floor": keyset.key,
        }
        params.update({f"g{i}": g for i, g in enumerate(chained, start=1)})
        stmt = _walk_stmt(shape, len(chained), bool(rest), floor)
        out += [(1000 * m // n, k) for k in session.scalars(stmt, params)]
        hi = m - 1
    # Counts >= t need one of the m - t + 1 rarest grams. Each step takes as many rare
    # grams as its posting budget allows, and the budget grows fourfold per step: one or
    # two queries usually cover every level needed, and rescans stay a fraction of the work.
    budget = POSTING_BUDGET
    while len(out) < limit and hi >= 1:
        p = m - hi + 1
        while p < m and sum(dfs[: p + 1]) <= budget:
            p += 1
        budget *= 4
        lo = m - p + 1
        common = present[p:]
        params = {**values, **keyset.values(lo, hi), "lim": limit - len(out)}
        params.update(rare=present[:p], common=common, n_common=len(common))
        set_based = session.dialect.name == "postgresql"
        rows = session.execute(_band_stmt(shape, bool(common), set_based), params).all()
        out += [(1000 * count // n, key) for key, count in rows]
        hi = lo - 1
    return out


# -- statements, built once per shape ---------------------------------------------------------
@functools.cache
def _df_stmt() -> Select[Any]:
    return select(_G.c.gram, _G.c.df).where(_G.c.gram.in_(bindparam("grams", expanding=True)))


@functools.lru_cache(maxsize=256)
def _narrowing_count(shape: FilterShape) -> int:
    return len(narrowing(shape))


@functools.lru_cache(maxsize=256)
def _count_stmt(shape: FilterShape, index: int) -> Select[Any]:
    """Rows passing one indexed filter, counted up to ``:cap`` (an index-only scan)."""
    rows = select(R.c.code_key).where(narrowing(shape)[index]).limit(bindparam("cap")).subquery()
    return select(func.count()).select_from(rows)


@functools.lru_cache(maxsize=256)
def _filter_only_stmt(shape: FilterShape, floor: bool, scan: bool) -> Select[Any]:
    """Rows passing the filters in code order; ``scan``: filters hidden from index choice."""
    conds = conditions(shape)
    if scan:  # coalesce(x, x) is x, but no index matches it: SQLite walks the primary key
        conds = [_opaque(c) for c in conds]
    stmt = select(R.c.code_key).where(*conds)
    if floor:
        stmt = stmt.where(R.c.code_key > bindparam("floor"))
    return stmt.order_by(R.c.code_key).limit(_LIM)


def _opaque(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    return func.coalesce(condition, False)


def _passes(shape: FilterShape, key: Any) -> ColumnElement[bool]:
    """Resource ``key`` passes the filters: a correlated probe of its primary key."""
    probe = select(R.c.code_key).where(R.c.code_key == key, *conditions(shape))
    return probe.scalar_subquery().is_not(None)


def _has(key: Any, param: str) -> ColumnElement[bool]:
    """Resource ``key`` has gram ``:param``: one primary-key probe."""
    p1 = _P.alias(f"h_{param}")
    probe = select(p1.c.code_key).where(p1.c.gram == bindparam(param), p1.c.code_key == key)
    return probe.scalar_subquery().is_not(None)


def _count_of(key: Any, param: str) -> ColumnElement[int]:
    """How many grams of ``:param`` (a list) resource ``key`` has: one probe each."""
    pi = _P.alias(f"c_{param}")
    grams: Any = bindparam(param, expanding=True)
    return select(func.count()).where(pi.c.code_key == key, pi.c.gram.in_(grams)).scalar_subquery()


@functools.lru_cache(maxsize=512)
def _walk_stmt(shape: FilterShape, chained: int, rest: bool, floor: bool) -> Select[Any]:
    """Resources with every present gram, in code order: the rarest drives, rows stop at the
    first gram they lack (probed rarest first), then the filters, then one count of the rest."""
    p0 = _P.alias("p0")
    conds: list[ColumnElement[bool]] = [p0.c.gram == bindparam("g0")]
    if floor:
        conds.append(p0.c.code_key > bindparam("floor"))
    conds += [_has(p0.c.code_key, f"g{i}") for i in range(1, chained + 1)]
    conds.append(_passes(shape, p0.c.code_key))
    if rest:
        conds.append(_count_of(p0.c.code_key, "rest") == bindparam("n_rest"))
    return select(p0.c.code_key).where(*conds).order_by(p0.c.code_key).limit(_LIM)


@functools.lru_cache(maxsize=256)
def _band_stmt(shape: FilterShape, common: bool, set_based: bool) -> Select[Any]:
    """Resources with ``:lo``..``:hi`` present grams among those having a ``:rare`` one.

    The rare grams are counted while gathering the candidates (one pass over
    their short posting lists). The common grams are then counted per
    candidate: by primary-key probes on SQLite (cheap there), and on
    PostgreSQL (``set_based``) by joining their postings and grouping, which
    it runs as one hash join instead of thousands of sub-plan executions.
    """
    rare_counts = (
        select(_P.c.code_key, func.count().label("n"))
        .where(_P.c.gram.in_(bindparam("rare", expanding=True)))
        .group_by(_P.c.code_key)
        .subquery("rc")
    )
    can_reach = rare_counts.c.n + bindparam("n_common") >= bindparam("lo")
    if set_based:
        q = _P.alias("q")
        joined = (
            select(rare_counts.c.code_key.label("k"))
            .join(R, R.c.code_key == rare_counts.c.code_key)
            .where(can_reach, *conditions(shape))
        )
        hits: ColumnElement[int] = rare_counts.c.n
        if common:
            on_common = and_(
                q.c.code_key == rare_counts.c.code_key,
                q.c.gram.in_(bindparam("common", expanding=True)),
            )
            joined = joined.outerjoin(q, on_common)
            hits = rare_counts.c.n + func.count(q.c.code_key)
        grouped = joined.add_columns(hits.label("hits")).group_by(
            rare_counts.c.code_key, rare_counts.c.n
        )
        return _ranked(grouped.subquery("scored"))
    hits = rare_counts.c.n
    if common:
        hits = rare_counts.c.n + _count_of(rare_counts.c.code_key, "common")
    scored = (
        select(rare_counts.c.code_key.label("k"), hits.label("hits"))
        .where(can_reach, _passes(shape, rare_counts.c.code_key))
        .offset(0)  # a fence: the probes run once per row, not again in the outer query
        .subquery("scored")
    )
    return _ranked(scored)


@functools.lru_cache(maxsize=256)
def _filter_first_stmt(shape: FilterShape, rare: bool, common: bool) -> Select[Any]:
    """Every resource passing the (selective) filters, scored: ``:rare`` grams counted from
    their postings (grouped, then joined), ``:common`` ones by probing each row."""
    hits: ColumnElement[int] = literal(0)
    stmt = select(R.c.code_key.label("k")).where(*conditions(shape))
    if rare:
        counts = (
            select(_P.c.code_key, func.count().label("n"))
            .where(_P.c.gram.in_(bindparam("rare", expanding=True)))
            .group_by(_P.c.code_key)
            .subquery("rc")
        )
        stmt = stmt.outerjoin(counts, counts.c.code_key == R.c.code_key)
        hits = func.coalesce(counts.c.n, 0)
    if common:
        hits = hits + _count_of(R.c.code_key, "common")
    scored = (
        stmt.add_columns(hits.label("hits"))
        .offset(0)  # a fence, as in _band_stmt
        .subquery("scored")
    )
    return _ranked(scored)


def _ranked(scored: Any) -> Select[Any]:
    return (
        select(scored.c.k, scored.c.hits)
        .where(_allows(scored.c.hits, scored.c.k))
        .order_by(scored.c.hits.desc(), scored.c.k)
        .limit(_LIM)
    )


def _grouped(
    session: Connection,
    query: ResourceQuery,
    shape: FilterShape,
    values: dict[str, Any],
    present: list[str],
    n: int,
) -> list[Row]:
    """Reference form for queries of over 1000 grams: count every posting of every gram."""
    pg = _P.alias("pg")
    score = (func.count() * 1000 / n).label("score")
    stmt = (
        select(R.c.code_key, score)
        .join(pg, and_(pg.c.code_key == R.c.code_key, pg.c.gram.in_(present)))
        .where(*conditions(shape))
        .group_by(R.c.code_key)
    )
    after = query.after
    if after is not None:
        key = after_key(after.code)
        stmt = stmt.having(or_(score < after.score, and_(score == after.score, R.c.code_key > key)))
    stmt = stmt.order_by(score.desc(), R.c.code_key).limit(query.limit)
    return [(int(s), k) for k, s in session.execute(stmt, values).all()]
