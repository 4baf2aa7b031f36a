"""The examples in the vault's module docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "licence_vault.holder",
    "licence_vault.identifier",
    "licence_vault.matters",
    "licence_vault.model",
    "licence_vault.status_list",
    "licence_vault.types",
]


@pytest.mark.parametrize("name", MODULES)
def test_doc_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
