"""The catalogue on a node backed by PostgreSQL: sample round trip, search, release check.

Also two worker processes on one port: a write through one is visible to the
other's in-memory state (match index via the change feed, negative list via
its version), whichever worker answers.
"""

from __future__ import annotations

import pytest

from catalog_registry.client import load_sample
from catalog_registry.sample_data import PIPL_28
from tests.fixtures.node import NodeFactory, NodeHandle
from tests.fixtures.postgres import reset_pg_schema
from tests.integration.catalog_registry.conftest import NATIONAL
from tests.integration.catalog_registry.support import Caller
from zhida.catalog.v1 import catalog_service_pb2 as pb
from zhida.catalog.v1 import catalog_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pg_node(node_factory: NodeFactory, pg_database_url: str) -> NodeHandle:
    reset_pg_schema(pg_database_url)
    return node_factory.start(
        {"ZHIDA_DATABASE__URL": pg_database_url, **NATIONAL},
        args=("--workers", "2"),
        name="catalog-pg",
    )


def test_sample_on_postgresql_with_two_workers(pg_node: NodeHandle) -> None:
    caller = Caller(pg_node)
    # Separate connections, so that calls are spread over both worker processes.
    stubs = [pb_grpc.CatalogServiceStub(pg_node.channel(fresh_connection=True)) for _ in range(4)]
    loaded = load_sample(stubs[0], caller.by_uscc, region=pg_node.config.node.region_code)
    assert all(m.candidates for m in loaded.demands[:5])
    for catalog in stubs:
        hits = catalog.SearchResources(
            pb.SearchResourcesRequest(keywords="食品经营许可"), metadata=caller.admin
        ).hits
        assert [h.score for h in hits][:2] == [1000, 1000]
        refused = catalog.CheckRelease(
            pb.CheckReleaseRequest(resource_code="1-01-001-0000-000002", item_name="人像照片"),
            metadata=caller.admin,
        )
        assert (refused.allowed, refused.legal_basis) == (False, PIPL_28)
        report = catalog.GetCoverageReport(pb.GetCoverageReportRequest(), metadata=caller.admin)
        assert sum(r.demands_filed for r in report.regions) == len(loaded.demands)
        met = sum(r.demands_met for r in report.regions)
        assert met == sum(m.met for m in loaded.demands)
