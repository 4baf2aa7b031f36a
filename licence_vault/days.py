"""The calendar a licence's dates are judged by: Beijing time (UTC+8).

A licence's validity dates (GB/T 36903 有效期起始日期 / 有效期截止日期), its
issue date and the date in an annotated copy's watermark are calendar days
of the issuing authority, in China Standard Time. A licence valid until
2026-12-31 is valid through 23:59:59 that day in Beijing (15:59:59 UTC) and
expired from midnight; judged by the UTC day it would stay valid until 08:00
the next morning, and a licence issued before 08:00 would read as issued
the day before. Timestamps stay UTC everywhere else; only the day is taken
in Beijing time. China has kept one offset, without daylight saving, since
1991, so a fixed offset is exact and needs no time-zone database.

Example::

    from datetime import UTC, datetime
    from licence_vault.days import licence_day

    licence_day(datetime(2026, 12, 31, 16, 0, tzinfo=UTC))  # date(2027, 1, 1)
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

__all__ = ["CHINA_STANDARD_TIME", "licence_day", "licence_today"]

CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")


def licence_day(moment: datetime) -> date:
    """The Beijing calendar day of ``moment`` (an aware datetime)."""
    if moment.tzinfo is None:
        raise ValueError("licence_day needs an aware datetime")
    return moment.astimezone(CHINA_STANDARD_TIME).date()


def licence_today() -> date:
    """Today in Beijing."""
    return licence_day(datetime.now(UTC))
