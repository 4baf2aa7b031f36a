"""The catalogue's gRPC tests run on a national node: the whole sample is within its region.

A node's catalogue holds its own region's resources (a county node refuses
the others: ``test_catalog_bad_input.py`` starts one of its own for that).
"""

from __future__ import annotations

import pytest

from tests.fixtures.node import NodeFactory, NodeHandle

NATIONAL = {"ZHIDA_NODE__REGION_CODE": "100000"}


@pytest.fixture(scope="module")
def node(node_factory: NodeFactory) -> NodeHandle:
    """A national node (SQLite, filesystem blobs) for one test module."""
    return node_factory.start(NATIONAL, name="catalog-national")
