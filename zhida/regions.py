"""GB/T 2260 region codes and the four administrative levels.

A region code has six digits: province ``XX0000``, city ``XXXX00``, county
``XXXXXX``. The national level, which GB/T 2260 does not code, is ``100000``
(the code the national government-service platform uses for 全国).

Example::

    >>> from zhida.regions import Level, parse_region
    >>> r = parse_region("420102")
    >>> r.level is Level.COUNTY, r.parent, r.province
    (True, '420100', '420000')
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

NATIONAL_CODE = "100000"

# First two digits of every province-level division (GB/T 2260).
PROVINCE_PREFIXES = frozenset(
    str(n)
    for n in (11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
              50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82)
)  # fmt: skip
_SIX_DIGITS = re.compile(r"[0-9]{6}")


class Level(enum.IntEnum):
    """Administrative level; values match ``zhida.node.v1.Level``."""

    NATIONAL = 1
    PROVINCE = 2
    CITY = 3
    COUNTY = 4


class RegionCodeError(ValueError):
    """A string that is not a GB/T 2260 region code (or the national code)."""


@dataclass(frozen=True, slots=True)
class Region:
    code: str
    level: Level

    @property
    def parent(self) -> str | None:
        """Code of the level above, or None for the national level."""
        if self.level is Level.NATIONAL:
            return None
        if self.level is Level.PROVINCE:
            return NATIONAL_CODE
        if self.level is Level.CITY:
            return self.code[:2] + "0000"
        return self.code[:4] + "00"

    @property
    def province(self) -> str | None:
        return None if self.level is Level.NATIONAL else self.code[:2] + "0000"

    def contains(self, other: Region) -> bool:
        """True when ``other`` is this region or lies below it."""
        if self.level is Level.NATIONAL:
            return True
        prefix = self.code[: {Level.PROVINCE: 2, Level.CITY: 4, Level.COUNTY: 6}[self.level]]
        return other.level >= self.level and other.code.startswith(prefix)


def parse_region(code: str) -> Region:
    """Validate ``code`` and return it with its level; raise RegionCodeError."""
    if not _SIX_DIGITS.fullmatch(code):
        raise RegionCodeError(f"region code must be six digits, got {code!r}")
    if code == NATIONAL_CODE:
        return Region(code, Level.NATIONAL)
    if code[:2] not in PROVINCE_PREFIXES:
        raise RegionCodeError(f"{code!r} does not start with a GB/T 2260 province code")
    if code[2:] == "0000":
        return Region(code, Level.PROVINCE)
    if code[4:] == "00":
        return Region(code, Level.CITY)
    if code[2:4] == "00":
        raise RegionCodeError(f"{code!r} names a county under city 00, which does not exist")
    return Region(code, Level.COUNTY)
