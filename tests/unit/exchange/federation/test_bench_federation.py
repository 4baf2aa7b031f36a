"""The pure helpers of the federation benchmark (bench/federation.py)."""

from __future__ import annotations

import pytest

from bench.federation import added_per_hop, machine_line, org_region


def test_added_latency_is_spread_over_the_hops() -> None:
    assert added_per_hop(4.0, 10.0) == 2.0
    assert added_per_hop(4.0, 4.0, hops=1) == 0.0
    with pytest.raises(ValueError, match="positive"):
        added_per_hop(1.0, 2.0, hops=0)


def test_the_region_of_a_credit_code() -> None:
    assert org_region("11420102000040176F") == "420102"
    assert org_region("111000000000170137") == "100000"


def test_machine_line_is_one_line() -> None:
    line = machine_line(
        {
            "cpu_model": "AMD EPYC",
            "cpu_count": 2,
            "memory_gib": 23.5,
            "os": "Linux",
            "python": "3.11",
        }
    )
    assert "\n" not in line
    assert line.startswith("AMD EPYC, 2 CPUs, 23.5 GiB")
