"""Field checks of share requests and decisions; each returns every problem as a FieldViolation.

Example::

    >>> from datetime import UTC, datetime
    >>> from exchange.model import Period
    >>> from exchange.validation import check_period
    >>> t = datetime(2025, 1, 1, tzinfo=UTC)
    >>> [v.description for v in check_period(Period(t, t), t)]
    ['must end after it starts', 'ends in the past']
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from catalog_registry.model import Resource
from exchange.model import Period, ShareRequest
from zhida.errors import FieldViolation

if TYPE_CHECKING:
    from exchange.requests import ApplicationSpec

MAX_TEXT = 2000


def check_period(period: Period, now: datetime, field: str = "period") -> list[FieldViolation]:
    """Inverted or empty periods, and periods already over at ``now``."""
    out: list[FieldViolation] = []
    if period.start.tzinfo is None or period.end.tzinfo is None:
        return [FieldViolation(field, "start and end must carry a timezone")]
    if period.end <= period.start:
        out.append(FieldViolation(field, "must end after it starts"))
    if period.end <= now:
        out.append(FieldViolation(field, "ends in the past"))
    return out


def check_text(value: str, field: str, what: str) -> list[FieldViolation]:
    if not isinstance(value, str) or not value.strip():
        return [FieldViolation(field, f"{what} is required")]
    if len(value) > MAX_TEXT:
        return [FieldViolation(field, f"{what} is longer than {MAX_TEXT} characters")]
    return []


def check_items(
    items: Sequence[str], known: set[str] | frozenset[str], field: str, where: str
) -> list[FieldViolation]:
    """Non-empty, no repeats, each one of ``known``."""
    if not items:
        return [FieldViolation(field, "at least one data item is required")]
    out: list[FieldViolation] = []
    seen: set[str] = set()
    for i, name in enumerate(items):
        if name in seen:
            out.append(FieldViolation(f"{field}[{i}]", f"{name!r} is repeated"))
        elif name not in known:
            out.append(FieldViolation(f"{field}[{i}]", f"{name!r} is not {where}"))
        seen.add(name)
    return out


def check_application(
    spec: ApplicationSpec, resource: Resource, now: datetime
) -> list[FieldViolation]:
    """Every field problem of an application against the (published) resource."""
    known = {item.name for item in resource.items}
    out = check_items(spec.items, known, "items", f"an item of {resource.key}")
    out += check_text(spec.purpose, "purpose", "the purpose")
    out += check_text(spec.legal_basis, "legal_basis", "the legal basis")
    out += check_period(spec.period, now)
    if spec.expected_volume < 0:
        out.append(FieldViolation("expected_volume", "must not be negative"))
    return out


def check_narrowing(
    request: ShareRequest,
    items: Sequence[str],
    until: datetime,
    rate_limit_per_minute: int | None,
    now: datetime,
) -> list[FieldViolation]:
    """An approval may grant fewer items and end earlier, never more or later."""
    out = check_items(items, frozenset(request.items), "items", "one of the requested items")
    if until > request.period.end:
        out.append(FieldViolation("until", "may not extend the requested period"))
    if until <= request.period.start or until <= now:
        out.append(FieldViolation("until", "must be after the period start and in the future"))
    if rate_limit_per_minute is not None and rate_limit_per_minute <= 0:
        out.append(FieldViolation("rate_limit_per_minute", "must be positive"))
    return out
