"""GB/T 2260 region codes and levels."""

from __future__ import annotations

import pytest

from zhida.regions import NATIONAL_CODE, Level, RegionCodeError, parse_region


@pytest.mark.parametrize(
    ("code", "level", "parent"),
    [
        ("100000", Level.NATIONAL, None),
        ("420000", Level.PROVINCE, "100000"),
        ("420100", Level.CITY, "420000"),
        ("420102", Level.COUNTY, "420100"),
        ("433101", Level.COUNTY, "433100"),
        ("429004", Level.COUNTY, "429000"),
    ],
)
def test_levels_and_parents(code: str, level: Level, parent: str | None) -> None:
    region = parse_region(code)
    assert region.level is level
    assert region.parent == parent


@pytest.mark.parametrize("code", ["", "42010", "4201022", "42010x", "990000", "420002"])
def test_invalid_codes(code: str) -> None:
    with pytest.raises(RegionCodeError):
        parse_region(code)


def test_containment_follows_the_hierarchy() -> None:
    national, hubei = parse_region(NATIONAL_CODE), parse_region("420000")
    wuhan, jiangan = parse_region("420100"), parse_region("420102")
    jishou = parse_region("433101")
    assert national.contains(jishou)
    assert hubei.contains(jiangan)
    assert wuhan.contains(jiangan)
    assert not hubei.contains(jishou)
    assert not jiangan.contains(wuhan)
    assert jiangan.contains(jiangan)
