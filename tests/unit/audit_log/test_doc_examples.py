"""The module docstring examples are executable and stay correct."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from audit_log import checkpoint, compact, events, hashes, merkle, note


@pytest.mark.parametrize(
    "module", [merkle, note, checkpoint, hashes, compact, events], ids=lambda m: m.__name__
)
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{module.__name__} has no runnable example"
    assert result.failed == 0
