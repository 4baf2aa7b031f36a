"""The local federation as real processes: serving, mTLS, catalogue both ways, witnessing, CLI."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from audit_log.checkpoint import CosignatureVerifier, open_cosigned_checkpoint
from audit_log.keys import keys_for_config
from catalog_registry import wire
from catalog_registry.model import DataItem, DataType, ResourceCode, ResourceSpec, ShareType
from catalog_registry.sample_data import PIPL_28
from catalog_registry.sql import SqlCatalogRepository
from exchange.federation.licence_index import HolderLocation, LicenceIndex, LicenceIndexStore
from exchange.federation.local import LOCAL_DEPARTMENTS, LocalFederation
from exchange.federation.state import SyncState
from exchange.federation.witnessing import Cosigned, last_cosigned
from licence_vault.types import BUSINESS_LICENCE
from signing.node_certs import NodeTlsFiles
from tests.unit.licence_vault.support import RESTAURANT, RESTAURANT_NAME
from zhida.audit.v1 import audit_service_pb2 as apb
from zhida.audit.v1 import audit_service_pb2_grpc as apb_grpc
from zhida.auth.principal import Role
from zhida.catalog.v1 import catalog_service_pb2 as cpb
from zhida.catalog.v1 import catalog_service_pb2_grpc as cpb_grpc
from zhida.client import bearer, error_details
from zhida.config import Config
from zhida.db import Database
from zhida.licence.v1 import licence_vault_service_pb2 as lpb
from zhida.licence.v1 import licence_vault_service_pb2_grpc as lpb_grpc
from zhida.node.v1 import node_service_pb2 as npb
from zhida.node.v1 import node_service_pb2_grpc as npb_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

T = TypeVar("T")
SAMR = LOCAL_DEPARTMENTS["国家市场监督管理总局"]
JIANGAN = LOCAL_DEPARTMENTS["武汉市江岸区市场监督管理局"]
ITEMS = (DataItem("统一社会信用代码", DataType.STRING), DataItem("名称", DataType.STRING))


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    fed = LocalFederation.start(tmp_path_factory.mktemp("local-federation"))
    try:
        yield fed
    finally:
        codes = fed.stop()
        assert codes == dict.fromkeys(fed.plans, 0), codes


def eventually(probe: Callable[[], T | None], *, within: float = 20.0, what: str = "") -> T:
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f}s: {what}")
        time.sleep(0.2)


def config(fed: LocalFederation, region: str) -> Config:
    return fed.nodes[region].config


def catalog(fed: LocalFederation, region: str) -> cpb_grpc.CatalogServiceStub:
    return cpb_grpc.CatalogServiceStub(grpc.insecure_channel(fed.nodes[region].address))


def spec(code: str, name: str, provider: str, provider_name: str, region: str) -> cpb.ResourceSpec:
    return wire.spec_to_pb(
        ResourceSpec(
            code=ResourceCode.parse(code),
            name=name,
            description=f"{provider_name}的{name}",
            provider_code=provider,
            provider_name=provider_name,
            region_code=region,
            items=(
                DataItem("统一社会信用代码", DataType.STRING),
                DataItem("名称", DataType.STRING),
            ),
            share_type=ShareType.UNCONDITIONAL,
        )
    )


def publish(fed: LocalFederation, region: str, message: cpb.ResourceSpec) -> None:
    md = bearer(fed.token_for(region, Role.DEPARTMENT, organisation=message.provider_code))
    stub = catalog(fed, region)
    stub.RegisterResource(cpb.RegisterResourceRequest(resource=message), metadata=md, timeout=10)
    stub.PublishResource(cpb.PublishResourceRequest(code=message.code), metadata=md, timeout=10)


def found(fed: LocalFederation, region: str, keywords: str, code: str) -> bool:
    md = bearer(fed.token_for(region, Role.ADMIN))
    reply = catalog(fed, region).SearchResources(
        cpb.SearchResourcesRequest(keywords=keywords), metadata=md, timeout=10
    )
    return any(hit.resource.spec.code == code for hit in reply.hits)


def held_locally(fed: LocalFederation, region: str, code: str) -> bool:
    database = Database(config(fed, region).database.url)
    try:
        return SqlCatalogRepository(database).get_resource(code) is not None
    finally:
        database.dispose()


def test_every_node_serves_with_its_own_region(federation: LocalFederation) -> None:
    assert set(federation.nodes) == {"100000", "420000", "430000", "420100", "420102"}
    for region, node in federation.nodes.items():
        channel = grpc.insecure_channel(node.address)
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        md = bearer(federation.token_for(region, Role.ADMIN))
        info = npb_grpc.NodeServiceStub(channel).GetNodeInfo(
            npb.GetNodeInfoRequest(), metadata=md, timeout=5
        )
        assert info.region_code == region
        assert info.database_dialect == "sqlite"
    # a token of one node is worthless at another (each its own development JWKS)
    county_token = bearer(federation.token_for("420102", Role.ADMIN))
    with pytest.raises(grpc.RpcError) as refused:
        npb_grpc.NodeServiceStub(grpc.insecure_channel(federation.nodes["420100"].address)).WhoAmI(
            npb.WhoAmIRequest(), metadata=county_token, timeout=5
        )
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_neighbours_reach_each_other_over_mutual_tls(federation: LocalFederation) -> None:
    fed = config(federation, "420102").federation
    creds = NodeTlsFiles(fed.tls_cert, fed.tls_key, fed.tls_ca).load()
    city = federation.plans["420100"].federation_listen
    with grpc.secure_channel(city, creds.channel_credentials()) as channel:
        me = npb_grpc.NodeServiceStub(channel).WhoAmI(npb.WhoAmIRequest(), timeout=10)
    assert me.subject == "node:420102"
    assert me.role == npb.ROLE_NODE
    # without a client certificate the handshake fails: no call reaches the node
    anonymous = grpc.ssl_channel_credentials(root_certificates=creds.root_pem())
    with grpc.secure_channel(city, anonymous) as channel, pytest.raises(grpc.RpcError) as info:
        npb_grpc.NodeServiceStub(channel).WhoAmI(npb.WhoAmIRequest(), timeout=5)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE


def test_a_national_resource_is_found_at_the_county(federation: LocalFederation) -> None:
    code = "1-04-001-0000-000901"
    publish(
        federation,
        "100000",
        spec(code, "全国企业登记注册信息", SAMR, "国家市场监督管理总局", "100000"),
    )
    started = time.monotonic()
    eventually(
        lambda: True if found(federation, "420102", "企业登记注册", code) else None,
        what="the national resource at the county",
    )
    assert time.monotonic() - started < 20
    assert held_locally(federation, "420102", code)  # served from the county's own catalogue
    assert held_locally(federation, "430000", code)  # and every other branch below national


def test_a_county_resource_reaches_the_national_catalogue(federation: LocalFederation) -> None:
    code = "2-04-001-0000-000902"
    publish(
        federation,
        "420102",
        spec(code, "江岸区食品经营许可信息", JIANGAN, "武汉市江岸区市场监督管理局", "420102"),
    )
    eventually(
        lambda: True if found(federation, "100000", "食品经营许可", code) else None,
        what="the county resource at national",
    )
    assert held_locally(federation, "420000", code)
    assert not held_locally(federation, "430000", code)  # not a sibling province's business


def test_a_negative_list_entry_travels_with_its_resource(federation: LocalFederation) -> None:
    """Listed at the resource's node, CheckRelease refuses the item at every level holding
    a copy, with the legal basis; only that node may remove it, and the removal travels."""
    code = "2-04-001-0000-000903"
    publish(
        federation,
        "420102",
        spec(code, "江岸区个体工商户登记信息", JIANGAN, "武汉市江岸区市场监督管理局", "420102"),
    )
    county = catalog(federation, "420102")
    admin = bearer(federation.token_for("420102", Role.ADMIN))
    county.AddNegativeEntry(
        cpb.AddNegativeEntryRequest(resource_code=code, item_names=["名称"], legal_basis=PIPL_28),
        metadata=admin, timeout=10,
    )  # fmt: skip

    def release(region: str) -> cpb.CheckReleaseResponse | None:
        md = bearer(federation.token_for(region, Role.ADMIN))
        request = cpb.CheckReleaseRequest(resource_code=code, item_name="名称")
        try:
            return catalog(federation, region).CheckRelease(request, metadata=md, timeout=10)
        except grpc.RpcError as error:  # the copy has not arrived yet
            if error.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def listed(region: str) -> cpb.CheckReleaseResponse | None:
        reply = release(region)
        return reply if reply is not None and reply.reason == "NEGATIVE_LISTED" else None

    for region in ("420100", "100000"):
        refused = eventually(functools.partial(listed, region), what=f"the entry at {region}")
        assert (refused.allowed, refused.legal_basis) == (False, PIPL_28)
        assert list(refused.entry.item_names) == ["名称"]
    national = catalog(federation, "100000")
    remove = cpb.RemoveNegativeEntryRequest(resource_code=code, item_names=["名称"])
    with pytest.raises(grpc.RpcError) as info:
        national.RemoveNegativeEntry(
            remove, metadata=bearer(federation.token_for("100000", Role.ADMIN)), timeout=10
        )
    details = error_details(info.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "IMPORTED_RESOURCE",
    )
    county.RemoveNegativeEntry(remove, metadata=admin, timeout=10)
    allowed = eventually(
        lambda: True if (r := release("100000")) is not None and r.allowed else None,
        what="the removal at national",
    )
    assert allowed


def test_the_county_checkpoint_is_cosigned_by_the_city(federation: LocalFederation) -> None:
    county, city = config(federation, "420102"), config(federation, "420100")
    # one refused call is one auth.failure event: the log has something to witness
    unauthenticated = apb_grpc.AuditServiceStub(
        grpc.insecure_channel(federation.nodes["420102"].address)
    )
    with pytest.raises(grpc.RpcError):
        unauthenticated.GetCheckpoint(apb.GetCheckpointRequest(), timeout=10)
    database = Database(county.database.url)
    try:

        def cosigned() -> Cosigned | None:
            last = last_cosigned(SyncState(database))
            return last if last is not None and last.size > 0 else None

        result = eventually(cosigned, within=30, what="a cosigned county checkpoint")
    finally:
        database.dispose()
    witness = keys_for_config(city, create=False).cosigner.verifier()
    assert result.witness_key == witness.vkey()
    log_key = keys_for_config(county, create=False).verifier
    checkpoint, cosignatures = open_cosigned_checkpoint(
        result.note, [log_key], [CosignatureVerifier.from_vkey(result.witness_key)]
    )
    assert checkpoint.size == result.size
    assert checkpoint.origin == "zhida.420102/zhida-420102"
    assert [c.name for c in cosignatures] == ["zhida.420100/zhida-420100"]

    # an auditor asks the county itself for its witnessed checkpoint
    def audit_stub(region: str) -> tuple[apb_grpc.AuditServiceStub, tuple[tuple[str, str], ...]]:
        channel = grpc.insecure_channel(federation.nodes[region].address)
        token = federation.token_for(region, Role.AUDITOR)
        return apb_grpc.AuditServiceStub(channel), bearer(token)

    stub, md = audit_stub("420102")
    remote = stub.GetCheckpoint(apb.GetCheckpointRequest(witnessed=True), metadata=md, timeout=10)
    assert remote.witness_key == witness.vkey()
    assert remote.cosigned_at.seconds > 0
    seen, _ = open_cosigned_checkpoint(
        remote.checkpoint, [log_key], [CosignatureVerifier.from_vkey(witness.vkey())]
    )
    assert (seen.size, seen.root_hash, seen.origin) == (
        remote.tree_size, remote.root_hash, remote.origin,
    )  # fmt: skip
    assert remote.tree_size >= result.size
    national, national_md = audit_stub("100000")  # no parent: nobody witnesses it here
    with pytest.raises(grpc.RpcError) as refused:
        national.GetCheckpoint(apb.GetCheckpointRequest(witnessed=True), metadata=national_md)
    details = error_details(refused.value)
    assert (details.code, details.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_WITNESSED")


def test_issued_licences_enter_the_node_licence_index(federation: LocalFederation) -> None:
    stub = lpb_grpc.LicenceVaultServiceStub(
        grpc.insecure_channel(federation.nodes["420102"].address)
    )
    issuer = bearer(federation.token_for("420102", Role.ISSUER, organisation=JIANGAN))
    fields = {
        "统一社会信用代码": RESTAURANT, "名称": RESTAURANT_NAME, "类型": "有限责任公司",
        "法定代表人": "张三", "成立日期": "2024-03-01", "住所": "武汉市江岸区沿江大道100号",
        "经营范围": "餐饮服务", "登记机关": "武汉市江岸区市场监督管理局",
    }  # fmt: skip
    draft = lpb.LicenceDraft(
        request_id="federation-index-1", type_code=BUSINESS_LICENCE.code, holder_code=RESTAURANT,
        holder_name=RESTAURANT_NAME, data=fields,
    )  # fmt: skip
    issued = stub.IssueLicence(lpb.IssueLicenceRequest(draft=draft), metadata=issuer, timeout=30)
    licence_id = issued.licence.licence_id
    county = config(federation, "420102")
    database = Database(county.database.url)
    try:
        hasher = keys_for_config(county, create=False).holder
        index = LicenceIndex(LicenceIndexStore(database), "420102", hasher.ref)

        def indexed() -> HolderLocation | None:
            where = index.locate(holder_id=RESTAURANT)
            return where if where.entries else None

        where = eventually(indexed, what="the county's licence in its index")
    finally:
        database.dispose()
    assert [(e.licence_id, e.type_code, e.region_code) for e in where.entries] == [
        (licence_id, BUSINESS_LICENCE.code, "420102")
    ]
    assert where.provinces == ("420000",)
    # one holder key for the deployment: the national node hashes the holder alike
    national = keys_for_config(config(federation, "100000"), create=False).holder
    assert national.ref(RESTAURANT) == where.holder_ref


def test_federation_up_prints_the_nodes_and_drains_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    command = [sys.executable, "-m", "zhida.cli.main", "federation", "up", "--dir", str(tmp_path)]
    proc = subprocess.Popen(
        [*command, "--regions", "100000", "420000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C or SIGTERM" in line:
                break
        output = "".join(lines)
        assert "zhida local federation" in output, output
        assert "100000 国家" in output, output
        assert "420000 湖北省" in output, output
        assert str(tmp_path / "420000" / "data") in output
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output + rest
    assert "exit code 0" in rest


def test_a_county_resource_changes_only_at_the_county(federation: LocalFederation) -> None:
    """The city holds a copy: changed there it would never reach the county, so it is
    refused, naming the county; changed at the county, the change reaches the city."""
    code = "2-04-001-0000-000904"
    message = spec(code, "江岸区食品生产许可信息", JIANGAN, "武汉市江岸区市场监督管理局", "420102")
    publish(federation, "420102", message)
    city = catalog(federation, "420100")
    city_admin = bearer(federation.token_for("420100", Role.ADMIN))

    def at_city(name: str) -> cpb.Resource | None:
        try:
            reply = city.GetResource(
                cpb.GetResourceRequest(code=code), metadata=city_admin, timeout=10
            )
        except grpc.RpcError as error:  # the copy has not arrived yet
            if error.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise
        resource = reply.resource
        # the published copy: registering and publishing are two changes, and the
        # registered one may reach the city first
        return (
            resource if resource.spec.name == name and resource.HasField("published_at") else None
        )

    copy = eventually(lambda: at_city(message.name), what="the county resource at the city")
    renamed = cpb.ResourceSpec()
    renamed.CopyFrom(message)
    renamed.name = "江岸区食品生产许可证信息"
    for call in (
        lambda: city.UpdateResource(
            cpb.UpdateResourceRequest(resource=renamed), metadata=city_admin, timeout=10
        ),
        lambda: city.RetireResource(
            cpb.RetireResourceRequest(code=code), metadata=city_admin, timeout=10
        ),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        details = error_details(info.value)
        assert (details.code, details.reason, details.metadata["home_region"]) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "IMPORTED_RESOURCE",
            "420102",
        )
    assert at_city(message.name) == copy  # unchanged
    owner = bearer(federation.token_for("420102", Role.DEPARTMENT, organisation=JIANGAN))
    catalog(federation, "420102").UpdateResource(
        cpb.UpdateResourceRequest(resource=renamed), metadata=owner, timeout=10
    )
    changed = eventually(lambda: at_city(renamed.name), what="the change at the city")
    assert changed.version == copy.version + 1
