"""Helpers of the share-request gRPC tests: the sample catalogue on a node, callers, requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from catalog_registry import wire as catalog_wire
from catalog_registry.client import load_sample
from catalog_registry.model import ShareType
from catalog_registry.sample_data import DEPARTMENTS
from exchange import wire
from tests.fixtures.node import NodeHandle
from tests.integration.catalog_registry.support import Caller, Metadata
from tests.unit.catalog_registry.conftest import make_spec
from zhida.auth.principal import Role
from zhida.catalog.v1 import catalog_service_pb2 as cpb
from zhida.catalog.v1 import catalog_service_pb2_grpc as cpb_grpc
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.exchange.v1 import exchange_service_pb2_grpc as pb_grpc

RESIDENT = "1-01-001-0000-000002"  # 武汉市公安局, conditional; 人像照片 negative-listed
SOCIAL_CARD = "2-03-001-0000-000005"  # 湖北省人社厅, unconditional
BIOMETRIC = "1-01-003-0000-000004"  # 公安部, not shared and negative-listed as a whole
NOT_SHARED = "3-11-009-0000-000001"  # registered by the tests: not shared, not negative-listed
DRAFT = "3-11-009-0000-000002"  # registered by the tests, never published
POLICE = DEPARTMENTS["wh-police"]
REQUESTER = DEPARTMENTS["ja-samr"]
# A node's catalogue holds its own region's resources: the whole sample needs a national node.
NATIONAL_NODE = {"ZHIDA_NODE__REGION_CODE": "100000"}


class People(Caller):
    """Call metadata per sample department and role on one node."""

    def admin_of(self, key: str) -> Metadata:
        d = DEPARTMENTS[key]
        return self._md(Role.ADMIN, d.uscc, d.region_code, f"admin@{key}")

    @property
    def auditor(self) -> Metadata:
        return self.role(Role.AUDITOR)


def exchange_stub(node: NodeHandle, *, fresh: bool = False) -> pb_grpc.ExchangeServiceStub:
    return pb_grpc.ExchangeServiceStub(node.channel(fresh_connection=fresh))


def load_catalogue(node: NodeHandle) -> People:
    """The node's region's part of the sample catalogue (all of it at a national node), plus
    a published not-shared resource and a draft (police's, 420100)."""
    people = People(node)
    catalog = cpb_grpc.CatalogServiceStub(node.channel())
    load_sample(catalog, people.by_uscc, region=node.config.node.region_code)
    police = people.dept("wh-police")
    for code, share in ((NOT_SHARED, ShareType.NOT_SHARED), (DRAFT, ShareType.CONDITIONAL)):
        spec = make_spec(code, name=f"测试资源{code[-1]}", share=share)
        catalog.RegisterResource(
            cpb.RegisterResourceRequest(resource=catalog_wire.spec_to_pb(spec)), metadata=police
        )
    catalog.PublishResource(cpb.PublishResourceRequest(code=NOT_SHARED), metadata=police)
    return people


def application(
    code: str = RESIDENT,
    items: tuple[str, ...] = ("姓名", "公民身份号码", "户籍地址"),
    days: int = 90,
) -> pb.ApplyForDataRequest:
    """A valid application by default, for ``days`` from a minute ago."""
    return pb.ApplyForDataRequest(**application_fields(code, items, days))  # type: ignore[arg-type]


def application_fields(
    code: str = RESIDENT,
    items: tuple[str, ...] = ("姓名", "公民身份号码", "户籍地址"),
    days: int = 90,
) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "resource_code": code,
        "items": list(items),
        "purpose": "开办餐饮店一件事：核验经营者身份",
        "legal_basis": "《市场主体登记管理条例》第十九条",
        "period_start": wire.timestamp(now - timedelta(minutes=1)),
        "period_end": wire.timestamp(now + timedelta(days=days)),
        "expected_volume": 200,
    }
