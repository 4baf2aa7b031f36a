"""A county → city → province chain of real ``zhida serve`` processes, one deployment PKI.

:func:`start_chain` issues node certificates from a
:class:`~tests.unit.exchange.federation.support.FederationPki` (root → 湖北 →
武汉 → 江岸区), writes each node's ``node.crt``/``node.key``/``ca.crt``, picks
the federation ports up front (so a node restarted later comes back on the
same port) and starts the province, the city (parent: province) and the
county (parent: city), each with its own data directory, SQLite database and
dev keys. The province loads its region's part of the sample catalogue and
holds the national resources as if pulled from a national node (none runs
here); catalogue federation brings them down to the county: 湖北省人社厅's
社会保障卡信息 (``2-03-001-0000-000005``, unconditional) belongs to region
420000, so an application for it made at the county is served by the province.

:class:`NodeCaller` plays a neighbour node by hand — its credentials, its
assertions and hop records — to send ``Forward`` envelopes straight to a
node's mTLS port (forged, replayed, altered, expired, looping).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from catalog_registry.federation import Federation
from catalog_registry.model import Change, Resource, ResourceStatus
from catalog_registry.sample_data import DEPARTMENTS, sample_catalogue
from catalog_registry.sql import SqlCatalogRepository
from exchange.federation.assertion import CallerClaims, Custody, NodeSigner
from exchange.federation.targets import digest_input
from tests.fixtures.node import NodeFactory, NodeHandle
from tests.integration.catalog_registry.support import Caller
from tests.integration.exchange.requests_support import application, load_catalogue
from tests.unit.exchange.federation.support import FederationPki
from zhida.auth.principal import Principal, Role
from zhida.catalog.v1 import catalog_service_pb2 as cpb
from zhida.catalog.v1 import catalog_service_pb2_grpc as cpb_grpc
from zhida.db import Database
from zhida.exchange.v1 import exchange_service_pb2 as xpb
from zhida.exchange.v1 import exchange_service_pb2_grpc as xpb_grpc
from zhida.federation.v1 import federation_service_pb2 as fpb
from zhida.federation.v1 import federation_service_pb2_grpc as fpb_grpc
from zhida.localnode import free_port
from zhida.regions import Level

NATIONAL, PROVINCE, CITY, COUNTY = "100000", "420000", "420100", "420102"
SOCIAL_CARD = "2-03-001-0000-000005"  # 湖北省人社厅 (420000), unconditional
NATIONAL_ID = "1-01-002-0000-000003"  # 公安部 (100000): no node above the province here
APPLY = "/zhida.exchange.v1.ExchangeService/ApplyForData"
REQUESTER = DEPARTMENTS["ja-samr"]
Metadata = tuple[tuple[str, str], ...]


class DelayProxy:
    """A loopback TCP forwarder that holds every chunk ``delay`` seconds: a slow link."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.delay = 0.0
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@dataclass
class Chain:
    """The three nodes, their federation addresses and the deployment PKI."""

    factory: NodeFactory
    pki: FederationPki
    env: dict[str, dict[str, str]]
    fed: dict[str, str]  # region -> host:port of its mTLS port
    uplink: DelayProxy  # the county's way to the city
    nodes: dict[str, NodeHandle] = field(default_factory=dict)

    @property
    def province(self) -> NodeHandle:
        return self.nodes[PROVINCE]

    @property
    def city(self) -> NodeHandle:
        return self.nodes[CITY]

    @property
    def county(self) -> NodeHandle:
        return self.nodes[COUNTY]

    def start(self, region: str) -> NodeHandle:
        self.nodes[region] = self.factory.start(env=self.env[region], name=f"fed-{region}")
        return self.nodes[region]

    def clerk(self, node: NodeHandle) -> Metadata:
        """A department token of 江岸区市场监督管理局 on ``node``."""
        return node.auth(
            role=Role.DEPARTMENT, org=REQUESTER.uscc, region=COUNTY, subject="clerk@ja-samr"
        )

    def exchange(self, node: NodeHandle) -> xpb_grpc.ExchangeServiceStub:
        return xpb_grpc.ExchangeServiceStub(node.channel())

    def requests_at(self, node: NodeHandle, purpose: str) -> list[xpb.ShareRequest]:
        """The requester's share requests with ``purpose`` stored at ``node``."""
        reply = self.exchange(node).ListShareRequests(
            xpb.ListShareRequestsRequest(), metadata=self.clerk(node), timeout=10
        )
        return [r for r in reply.requests if r.purpose == purpose]


def start_chain(factory: NodeFactory, tls_root: Path, pki: FederationPki) -> Chain:
    """Start province, city and county (see the module docstring)."""
    fed = {region: f"127.0.0.1:{free_port()}" for region in (PROVINCE, CITY, COUNTY)}
    uplink = DelayProxy("127.0.0.1", int(fed[CITY].rpartition(":")[2]))
    parents = {PROVINCE: "", CITY: fed[PROVINCE], COUNTY: uplink.address}
    children = {PROVINCE: f"{CITY}={fed[CITY]}", CITY: f"{COUNTY}={fed[COUNTY]}", COUNTY: ""}
    env: dict[str, dict[str, str]] = {}
    for region in fed:
        files = pki.node(region).write(tls_root / region)
        env[region] = {
            "ZHIDA_NODE__REGION_CODE": region,
            "ZHIDA_NODE__NAME": f"zhida-{region}",
            "ZHIDA_FEDERATION__LISTEN": fed[region],
            "ZHIDA_FEDERATION__PARENT": parents[region],
            "ZHIDA_FEDERATION__CHILDREN": children[region],
            "ZHIDA_FEDERATION__TLS_CERT": str(files.cert),
            "ZHIDA_FEDERATION__TLS_KEY": str(files.key),
            "ZHIDA_FEDERATION__TLS_CA": str(files.ca),
        }
    chain = Chain(factory, pki, env, fed, uplink)
    for region in (PROVINCE, CITY, COUNTY):
        chain.start(region)
    load_catalogue(chain.province)
    seed_from_national(chain.province, (NATIONAL_ID,))
    ensure_resources(chain.county, (SOCIAL_CARD, NATIONAL_ID))
    return chain


def seed_from_national(node: NodeHandle, codes: tuple[str, ...]) -> None:
    """Import national sample resources into ``node``'s catalogue as its pull from a national
    parent would (``Federation.import_from_parent``): no national node runs in the chain, and
    a node registers only its own region's resources."""
    specs = {spec.code.text: spec for spec in sample_catalogue().resources}
    now = datetime.now(UTC)
    changes = [
        Change(n, Resource(specs[code], Level.NATIONAL, 2, ResourceStatus.PUBLISHED, now, now,
                           published_at=now, updated_by="clerk@mps"), NATIONAL, n)
        for n, code in enumerate(codes, start=1)
    ]  # fmt: skip
    database = Database(node.config.database.url)
    try:
        federation = Federation(SqlCatalogRepository(database), node.config.node.region_code)
        report = federation.import_from_parent(changes)
    finally:
        database.dispose()
    assert report.imported == len(codes), report


def ensure_resources(node: NodeHandle, codes: tuple[str, ...], wait: float = 15.0) -> None:
    """Wait until ``codes`` (sample resources of the regions above) are in ``node``'s catalogue.

    Catalogue federation (the nodes' background pull) brings them down within a
    few sync intervals; AssertionError naming the missing ones after ``wait``
    seconds (a node does not register another region's resources).
    """
    people = Caller(node)
    stub = cpb_grpc.CatalogServiceStub(node.channel())

    def known(code: str) -> bool:
        try:
            stub.GetResource(cpb.GetResourceRequest(code=code), metadata=people.admin, timeout=5)
        except grpc.RpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True

    deadline = time.monotonic() + wait
    missing = [c for c in codes if not known(c)]
    while missing and time.monotonic() < deadline:
        time.sleep(0.5)
        missing = [c for c in missing if not known(c)]
    assert not missing, f"not pulled down to {node.config.node.region_code}: {missing}"


def apply_request(purpose: str = "开办餐饮店一件事：核验经营者社保") -> xpb.ApplyForDataRequest:
    """An application for 社会保障卡信息 (unconditional: granted at once where it is served)."""
    request = application(SOCIAL_CARD, items=("姓名", "社会保障号码"))
    request.purpose = purpose
    return request


def trailers(call: Any) -> dict[str, str]:
    return {k: v for k, v in call.trailing_metadata() or () if isinstance(v, str)}


class NodeCaller:
    """A neighbour node played by the test: signs custody and calls ``Forward`` over mTLS."""

    def __init__(self, pki: FederationPki, region: str) -> None:
        self.pki = pki
        self.region = region
        self.credentials = pki.node(region)
        self.signer = NodeSigner(self.credentials)
        self._channels: list[grpc.Channel] = []

    def stub(self, address: str, *, credentials: Any = None) -> fpb_grpc.FederationServiceStub:
        creds = credentials or self.credentials.channel_credentials()
        channel = grpc.secure_channel(address, creds)
        self._channels.append(channel)
        return fpb_grpc.FederationServiceStub(channel)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def claims(
        self,
        request: bytes,
        *,
        method: str = APPLY,
        target: str = SOCIAL_CARD,
        target_region: str = PROVINCE,
        key: str = "key-1",
        deadline_ms: int | None = None,
        trace_id: str = "fed-test",
    ) -> CallerClaims:
        caller = Principal(
            subject="clerk@ja-samr",
            role=Role.DEPARTMENT,
            organisation=REQUESTER.uscc,
            region_code=COUNTY,
            expires_at=int(time.time()) + 600,
        )
        return CallerClaims.of(
            caller,
            trace_id=trace_id,
            idempotency_key=key,
            target_kind="resource",
            target=target,
            target_region=target_region,
            request=digest_input(method, request),
            deadline_ms=deadline_ms or int(time.time() * 1000) + 20_000,
        )

    def assertion(self, claims: CallerClaims, audience: str) -> Custody:
        return self.signer.assert_caller(claims, audience=audience)

    @staticmethod
    def envelope(
        custody: Custody,
        request: bytes,
        *,
        method: str = APPLY,
        target_region: str = PROVINCE,
        key: str = "key-1",
    ) -> fpb.ForwardRequest:
        return fpb.ForwardRequest(
            method=method,
            request=request,
            custody=custody.encode(),
            target_region=target_region,
            idempotency_key=key,
        )


def events(node: NodeHandle, action: str = "data.request") -> list[Any]:
    """The audit events of ``action`` on ``node`` (auditor token)."""
    from zhida.audit.v1 import audit_service_pb2 as apb
    from zhida.audit.v1 import audit_service_pb2_grpc as apb_grpc

    stub = apb_grpc.AuditServiceStub(node.channel())
    request = apb.SearchEventsRequest(actions=[action], page_size=1000)
    md = node.auth(role=Role.AUDITOR, org=REQUESTER.uscc, region=node.config.node.region_code)
    return list(stub.SearchEvents(request, metadata=md, timeout=10).events)


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.05)


def env_for(chain: Chain, region: str) -> Mapping[str, str]:
    return chain.env[region]
