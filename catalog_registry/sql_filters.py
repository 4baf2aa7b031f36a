"""A :class:`~catalog_registry.repository.ResourceQuery`'s filters, as SQL with bound values.

A query's filters have a *shape* (which filters are present, and how the
region is matched) and *values*. Statements are built once per shape, with
bind parameters, and cached (:mod:`catalog_registry.sql_search`): building
SQLAlchemy statements costs more Python time than SQLite needs to run them,
and identical SQL text lets PostgreSQL reuse prepared plans.

Region containment is a code prefix (GB/T 2260), so "this region and below"
is a range of codes: ``XX0000``–``XX9999`` for a province, ``XXXX00``–``XXXX99``
for a city, the code itself for a county, anything for the national level.

Example::

    >>> from catalog_registry.repository import ResourceQuery
    >>> from catalog_registry.sql_filters import shape_of
    >>> shape, values = shape_of(ResourceQuery(region_code="420100", include_subregions=True))
    >>> shape.region, values["region_lo"], values["region_hi"]
    ('range', '420100', '420199')
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam

from catalog_registry.codec import code_key
from catalog_registry.model import ResourceStatus
from catalog_registry.models import GRAM_CHARS, ResourceRow
from catalog_registry.repository import ResourceQuery
from zhida.errors import FieldViolation, InvalidArgument
from zhida.regions import Level, RegionCodeError, parse_region

R = cast(Table, ResourceRow.__table__)
_CANONICAL = re.compile(r"[1-3]-[0-9]{2}-[0-9]{3}-[0-9]{4}-[0-9]{6}")


def gram_key(gram: str) -> str:
    """The stored form of a gram: itself, or a prefix plus a hash when longer than the column."""
    if len(gram) <= GRAM_CHARS:
        return gram
    digest = hashlib.sha256(gram.encode()).hexdigest()[: GRAM_CHARS - 41]
    return f"{gram[:40]}#{digest}"


def after_key(code: str) -> int:
    """The code key of a page token's code; ``InvalidArgument`` if it is not canonical."""
    if not _CANONICAL.fullmatch(code):
        raise InvalidArgument(
            "malformed page token",
            reason="INVALID_PAGE_TOKEN",
            violations=[FieldViolation("page_token", "not a token we issued")],
        )
    return code_key(code)


@dataclass(frozen=True, slots=True)
class FilterShape:
    """Which filters a query has; the key of the statement caches."""

    provider: bool = False
    level: bool = False
    share: bool = False
    region: str = ""  # "", "eq" or "range"
    rare_status: bool = False  # PUBLISHED is not among the statuses (few rows match)


def shape_of(query: ResourceQuery) -> tuple[FilterShape, dict[str, Any]]:
    """The query's filter shape and the values of its bind parameters."""
    values: dict[str, Any] = {"statuses": [s.value for s in query.statuses]}
    if query.provider_code is not None:
        values["provider"] = query.provider_code
    if query.level is not None:
        values["level"] = int(query.level)
    if query.share_type is not None:
        values["share"] = query.share_type.value
    region = ""
    if query.region_code is not None:
        bounds = _region_range(query.region_code) if query.include_subregions else None
        if bounds is None:
            region, values["region"] = "eq", query.region_code
        elif bounds != ("", ""):  # national: every region
            region = "range"
            values["region_lo"], values["region_hi"] = bounds
    shape = FilterShape(
        provider="provider" in values,
        level="level" in values,
        share="share" in values,
        region=region,
        rare_status=ResourceStatus.PUBLISHED not in query.statuses,
    )
    return shape, values


def _region_range(code: str) -> tuple[str, str] | None:
    """(low, high) codes of the region and below; ("", "") for all; None for just the code."""
    try:
        level = parse_region(code).level
    except RegionCodeError:
        return None  # matches nothing a store accepted
    if level is Level.NATIONAL:
        return ("", "")
    if level is Level.PROVINCE:
        return (code[:2] + "0000", code[:2] + "9999")
    if level is Level.CITY:
        return (code[:4] + "00", code[:4] + "99")
    return None


def narrowing(shape: FilterShape) -> list[ColumnElement[bool]]:
    """The filters that may leave only a small part of the catalogue, each served by an index."""
    out: list[ColumnElement[bool]] = []
    if shape.rare_status:
        out.append(R.c.status.in_(bindparam("statuses", expanding=True)))
    if shape.provider:
        out.append(R.c.provider_code == bindparam("provider"))
    if shape.level:
        out.append(R.c.level == bindparam("level"))
    if shape.share:
        out.append(R.c.share_type == bindparam("share"))
    if shape.region == "eq":
        out.append(R.c.region_code == bindparam("region"))
    elif shape.region == "range":
        out.append(R.c.region_code.between(bindparam("region_lo"), bindparam("region_hi")))
    return out


def conditions(shape: FilterShape) -> list[ColumnElement[bool]]:
    """Every filter of ``shape`` on ``catalog_resource``."""
    status = [] if shape.rare_status else [R.c.status.in_(bindparam("statuses", expanding=True))]
    return [*status, *narrowing(shape)]


class Keyset:
    """Which gram counts a keyword page may still hold, given the page token's sort key.

    Counts up to ``lt`` entirely, and count ``eq`` only after code key ``key``; ``m`` is
    how many query grams occur at all, ``n`` how many the query has (score
    ``1000 * count // n``: distinct per count while ``n <= 1000``).
    """

    def __init__(self, query: ResourceQuery, m: int, n: int) -> None:
        self.eq: int | None = None
        self.key = 0
        self.lt = m
        after = query.after
        if after is not None:
            self.key = after_key(after.code)
            self.lt = max((c for c in range(1, m + 1) if 1000 * c // n < after.score), default=0)
            self.eq = next((c for c in range(1, m + 1) if 1000 * c // n == after.score), None)

    @property
    def top(self) -> int:
        return max(self.lt, self.eq or 0)

    def values(self, lo: int, hi: int) -> dict[str, int]:
        """Counts within [lo, hi] allowed: ``lo <= c <= hi`` or ``c == eq`` after ``after``
        (``eq`` -1 when it is not within the range)."""
        eq = self.eq if self.eq is not None and lo <= self.eq <= hi else -1
        return {"lo": lo, "hi": min(hi, self.lt), "eq": eq, "after": self.key}
