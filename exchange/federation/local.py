"""The local four-level federation: several ``zhida serve`` processes on loopback.

:meth:`LocalFederation.start` is what ``zhida federation up``, the demo, the
tests and the benchmark use. For the regions asked for (default: national
100000, 湖北 420000, 湖南 430000, 武汉 420100, 江岸区 420102) it

1. plans the tree — each node's parent is the nearest region above it that
   is also started (a region with none is refused) — and picks free ports on
   127.0.0.1: the bearer-token port, the mutual-TLS federation port and the
   metrics port;
2. makes ONE deployment under ``<base>/deployment``
   (:class:`~exchange.federation.local_pki.DeploymentRoot`) and provisions
   every node's data directory from it: mTLS node certificate, a signing
   deployment under the shared root with certificates and seals for the
   departments of its region (:data:`LOCAL_DEPARTMENTS`), the shared audit
   holder key; ``<base>/trust.json`` is the offline verifier bundle of all;
3. writes ``<base>/<region>/node.toml`` (own data directory, SQLite
   database and blob directory, ``[federation]`` parent, children, listen,
   TLS files and sync intervals) and starts every node at once as its own
   process (:class:`zhida.localnode.LocalNode`), then waits until each
   reports SERVING.

Each node verifies bearer tokens against its own development JWKS:
:meth:`LocalFederation.token_for` mints one for a given node. Nodes trust
each other through mTLS and signed assertions, never tokens. Re-starting
on the same ``base_dir`` keeps the deployment, the data and the keys (ports
are picked anew). :meth:`LocalFederation.stop` sends SIGTERM to all nodes
at once and waits for their drains.

Example::

    with LocalFederation.start(tmp) as fed:
        county = fed.nodes["420102"]
        token = fed.token_for("420102", Role.DEPARTMENT)
        stub = CatalogServiceStub(grpc.insecure_channel(county.address))
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType

from catalog_registry.sample_tables import make_uscc
from exchange.federation import phases
from exchange.federation.local_pki import (
    DeploymentRoot,
    departments_for,
    federation_bundle,
    quiet_dev_key_warnings,
)
from zhida.auth.mint import DEMO_ORGS
from zhida.auth.principal import Role
from zhida.config import Config, load_config
from zhida.errors import InvalidArgument
from zhida.files import atomic_write
from zhida.localnode import LocalNode, NodeStartError, free_port
from zhida.regions import Level, RegionCodeError, parse_region

__all__ = [
    "DEFAULT_REGIONS",
    "LOCAL_DEPARTMENTS",
    "LocalFederation",
    "NodePlan",
    "node_toml",
    "plan_federation",
]

DEFAULT_REGIONS = ("100000", "420000", "430000", "420100", "420102")
REGION_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "100000": "国家",
        "420000": "湖北省",
        "430000": "湖南省",
        "420100": "武汉市",
        "420102": "江岸区",
        "433100": "湘西州",
        "433101": "吉首市",
    }
)
LOCAL_DEPARTMENTS: Mapping[str, str] = MappingProxyType(
    {**DEMO_ORGS, "湖南省市场监督管理局": make_uscc("430000", 16001)}
)
"""Departments that get a signing certificate and a licence seal, each at the node of
its region (or the nearest node above it): the demo organisations and 湖南省市场监督管理局."""


@dataclass(frozen=True, slots=True)
class NodePlan:
    """One node of the local federation: where it lives and how it is reached."""

    region_code: str
    level: Level
    name: str
    directory: Path
    listen: str
    federation_listen: str
    metrics_listen: str
    parent: str | None  # region code of the parent node
    children: tuple[str, ...]

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def config_path(self) -> Path:
        return self.directory / "node.toml"

    @property
    def label(self) -> str:
        return REGION_NAMES.get(self.region_code, self.region_code)


def plan_federation(base_dir: Path, regions: Iterable[str]) -> dict[str, NodePlan]:
    """The tree of ``regions`` with fresh loopback ports (InvalidArgument if not a tree)."""
    try:
        parsed = {r.code: r for r in (parse_region(code) for code in regions)}
    except RegionCodeError as exc:
        raise InvalidArgument(str(exc), reason="INVALID_REGION_CODE") from None
    if not parsed:
        raise InvalidArgument("name at least one region", reason="NO_REGIONS")
    parents: dict[str, str | None] = {}
    for code, region in parsed.items():
        above = [r for r in parsed.values() if r.code != code and r.contains(region)]
        if not above and region.level is not Level.NATIONAL and len(parsed) > 1:
            raise InvalidArgument(
                f"region {code} has no node above it: start its province or the national node",
                reason="NO_PARENT_NODE",
            )
        parents[code] = max(above, key=lambda r: r.level).code if above else None
    plans = {}
    for code, region in sorted(parsed.items(), key=lambda kv: (kv[1].level, kv[0])):
        plans[code] = NodePlan(
            region_code=code,
            level=region.level,
            name=f"zhida-{code}",
            directory=base_dir / code,
            listen=f"127.0.0.1:{free_port()}",
            federation_listen=f"127.0.0.1:{free_port()}",
            metrics_listen=f"127.0.0.1:{free_port()}",
            parent=parents[code],
            children=tuple(sorted(c for c, p in parents.items() if p == code)),
        )
    return plans


def node_toml(
    plan: NodePlan,
    plans: Mapping[str, NodePlan],
    *,
    sync_interval: float = 0.5,
    witness_interval: float = 2.0,
) -> str:
    """The configuration file of ``plan``'s node (SQLite and blobs under its data dir)."""
    parent = plans[plan.parent].federation_listen if plan.parent else ""
    lines = [
        f"# {plan.label} ({plan.region_code}) node of the local federation (zhida federation up).",
        "[node]",
        f'name = "{plan.name}"',
        f'region_code = "{plan.region_code}"',
        f'listen = "{plan.listen}"',
        f'data_dir = "{plan.data_dir}"',
        "grace_seconds = 5.0",
        "",
        "[metrics]",
        f'listen = "{plan.metrics_listen}"',
        "",
        "[federation]",
        f'listen = "{plan.federation_listen}"',
        f'parent = "{parent}"',
        f"sync_interval_seconds = {sync_interval}",
        f"witness_interval_seconds = {witness_interval}",
        "",
        "[federation.children]",
        *(f'"{c}" = "{plans[c].federation_listen}"' for c in plan.children),
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class NodeRow:
    """What ``zhida federation up`` prints for one node."""

    region_code: str
    label: str
    level: str
    address: str
    federation_address: str
    pid: int
    data_dir: Path
    config_path: Path


class LocalFederation:
    """Running nodes of one local deployment; see the module docstring."""

    def __init__(
        self, base_dir: Path, plans: Mapping[str, NodePlan], nodes: dict[str, LocalNode]
    ) -> None:
        self.base_dir = base_dir
        self.plans = dict(plans)
        self.nodes = nodes  # filled while starting: stop() sees every node spawned so far

    @property
    def trust_bundle_path(self) -> Path:
        """The offline verifier bundle of every node (shared root, CAs, CRLs, seals)."""
        return self.base_dir / "trust.json"

    @classmethod
    def prepare(
        cls,
        base_dir: Path,
        regions: Iterable[str] = DEFAULT_REGIONS,
        *,
        departments: Mapping[str, str] = LOCAL_DEPARTMENTS,
        sync_interval: float = 0.5,
        witness_interval: float = 2.0,
    ) -> dict[str, NodePlan]:
        """Plan, provision and write the configuration of every node (nothing started)."""
        base_dir = base_dir.resolve()
        base_dir.mkdir(parents=True, exist_ok=True)
        plans = plan_federation(base_dir, regions)
        root = DeploymentRoot.open_or_create(base_dir / "deployment")

        def provision(plan: NodePlan) -> Config:
            plan.data_dir.mkdir(parents=True, exist_ok=True)
            text = node_toml(
                plan, plans, sync_interval=sync_interval, witness_interval=witness_interval
            )
            atomic_write(plan.config_path, text.encode(), mode=0o644)
            config = load_config(plan.config_path, env={})
            root.provision(config, departments_for(plan.region_code, plans, departments))
            return config

        # seal pictures dominate (PNG encoding releases the GIL): two at a time
        with quiet_dev_key_warnings(), ThreadPoolExecutor(max_workers=2) as pool:
            configs = list(pool.map(provision, plans.values()))
            bundle = federation_bundle(configs)
        atomic_write(base_dir / "trust.json", bundle.to_json().encode(), mode=0o644)
        return plans

    @classmethod
    def start(
        cls,
        base_dir: Path,
        regions: Iterable[str] = DEFAULT_REGIONS,
        *,
        departments: Mapping[str, str] = LOCAL_DEPARTMENTS,
        sync_interval: float = 0.5,
        witness_interval: float = 2.0,
        timeout: float = 90.0,
        extra_env: Mapping[str, str] | None = None,
    ) -> LocalFederation:
        """Prepare, start every node in parallel and wait until all are SERVING.

        NodeStartError (with the failing node's log tail) if one does not come
        up within ``timeout``; the others are stopped then. The nodes do not
        inherit this process's ``ZHIDA_*`` variables (a ``ZHIDA_DATABASE__URL``
        would give them one database); ``extra_env`` is passed on.
        """
        plans = cls.prepare(
            base_dir,
            regions,
            departments=departments,
            sync_interval=sync_interval,
            witness_interval=witness_interval,
        )
        nodes: dict[str, LocalNode] = {}
        federation = cls(base_dir.resolve(), plans, nodes)
        try:
            for code, plan in plans.items():
                env = {
                    **{k: v for k, v in os.environ.items() if k == phases.ENV},  # measuring
                    **(extra_env or {}),
                    "ZHIDA_CONFIG": str(plan.config_path),
                    "ZHIDA_NODE__DATA_DIR": str(plan.data_dir),
                    "ZHIDA_NODE__LISTEN": plan.listen,
                    "ZHIDA_METRICS__LISTEN": plan.metrics_listen,
                }
                nodes[code] = LocalNode.spawn(plan.data_dir, extra_env=env, inherit_zhida_env=False)
            deadline = time.monotonic() + timeout
            for code, node in nodes.items():
                try:
                    node.wait_serving(max(1.0, deadline - time.monotonic()))
                except NodeStartError as exc:
                    raise NodeStartError(f"node {code}: {exc}") from None
        except BaseException:
            federation.stop()
            raise
        return federation

    # -- using it ------------------------------------------------------------------------

    def token_for(
        self,
        region_code: str,
        role: Role,
        *,
        organisation: str | None = None,
        subject: str | None = None,
        ttl_seconds: int = 3600,
    ) -> str:
        """A development token accepted by the node of ``region_code`` (its own JWKS)."""
        return self.nodes[region_code].mint(
            role,
            organisation=organisation,
            region_code=region_code,
            subject=subject,
            ttl_seconds=ttl_seconds,
        )

    def rows(self) -> list[NodeRow]:
        return [
            NodeRow(
                plan.region_code,
                plan.label,
                plan.level.name.lower(),
                plan.listen,
                plan.federation_listen,
                self.nodes[code].proc.pid,
                plan.data_dir,
                plan.config_path,
            )
            for code, plan in self.plans.items()
            if code in self.nodes
        ]

    def exited(self) -> dict[str, int]:
        """Nodes whose process has ended, with their exit codes."""
        codes = {code: node.proc.poll() for code, node in self.nodes.items()}
        return {code: rc for code, rc in codes.items() if rc is not None}

    def stop(self, timeout: float = 30.0) -> dict[str, int]:
        """SIGTERM to every node at once, then wait for each drain; the exit codes."""
        for node in self.nodes.values():
            if node.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, int] = {}
        for code, node in self.nodes.items():
            try:
                node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
            codes[code] = node.proc.returncode
        return codes

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
