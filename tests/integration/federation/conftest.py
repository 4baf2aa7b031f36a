"""One county → city → province chain for the federation tests (package scope: started once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.node import NodeFactory
from tests.integration.federation.support import Chain, start_chain
from tests.unit.exchange.federation.support import FederationPki


@pytest.fixture(scope="package")
def deployment() -> FederationPki:
    """The deployment's PKI: root → 湖北 → 武汉 → 江岸区 CAs."""
    return FederationPki.create("A")


@pytest.fixture(scope="package")
def foreign() -> FederationPki:
    """Another deployment with the same regions under another root."""
    return FederationPki.create("B")


@pytest.fixture(scope="package")
def chain(tmp_path_factory: pytest.TempPathFactory, deployment: FederationPki) -> Iterator[Chain]:
    factory = NodeFactory(tmp_path_factory.mktemp("federation"))
    started: Chain | None = None
    try:
        started = start_chain(factory, tmp_path_factory.mktemp("tls"), deployment)
        yield started
    finally:
        factory.close()
        if started is not None:
            started.uplink.close()
