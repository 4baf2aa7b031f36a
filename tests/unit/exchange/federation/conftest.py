"""Fixtures for the federation tests: two unrelated deployments' PKIs."""

from __future__ import annotations

import pytest

from tests.unit.exchange.federation.support import FederationPki


@pytest.fixture(scope="session")
def pki() -> FederationPki:
    """Deployment A: 100000 → 420000 → 420100 → 420102."""
    return FederationPki.create("A")


@pytest.fixture(scope="session")
def foreign() -> FederationPki:
    """Deployment B: the same regions under another root."""
    return FederationPki.create("B")
