"""The doctest examples in the catalogue modules' docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "model",
    "text",
    "validation",
    "memory",
    "sample_data",
    "sample_tables",
    "synthetic",
    "codec",
    "paging",
    "sql_filters",
    "wire",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name: str) -> None:
    module = importlib.import_module(f"catalog_registry.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
