"""The local federation's plan, node configuration and one-deployment PKI (no processes)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from exchange.federation import local_pki
from exchange.federation.local import (
    LOCAL_DEPARTMENTS,
    LocalFederation,
    node_toml,
    plan_federation,
)
from exchange.federation.local_pki import DeploymentRoot, federation_bundle
from signing.deployment import Deployment
from signing.node_certs import NodeTlsFiles, NodeVerifier
from signing.verify import verify_document
from zhida.config import load_config
from zhida.errors import InvalidArgument

HUNAN_SAMR = LOCAL_DEPARTMENTS["湖南省市场监督管理局"]
HUBEI_SAMR = LOCAL_DEPARTMENTS["湖北省市场监督管理局"]


def test_examples_in_the_docstrings() -> None:
    result = doctest.testmod(local_pki)
    assert result.attempted > 0
    assert result.failed == 0


def test_the_plan_is_a_tree_by_region(tmp_path: Path) -> None:
    plans = plan_federation(tmp_path, ["420102", "100000", "420000", "430000", "420100"])
    assert list(plans) == ["100000", "420000", "430000", "420100", "420102"]
    assert {c: p.parent for c, p in plans.items()} == {
        "100000": None,
        "420000": "100000",
        "430000": "100000",
        "420100": "420000",
        "420102": "420100",
    }
    assert plans["100000"].children == ("420000", "430000")
    ports = {p.listen for p in plans.values()} | {p.federation_listen for p in plans.values()}
    assert len(ports) == 10
    # a level may be skipped: the county hangs below the province then
    assert plan_federation(tmp_path, ["100000", "420000", "420102"])["420102"].parent == "420000"
    with pytest.raises(InvalidArgument) as info:
        plan_federation(tmp_path, ["420000", "430000"])
    assert info.value.reason == "NO_PARENT_NODE"
    with pytest.raises(InvalidArgument):
        plan_federation(tmp_path, ["4201"])
    assert plan_federation(tmp_path, ["420102"])["420102"].parent is None  # one node alone


def test_node_configuration_names_the_neighbours_mtls_ports(tmp_path: Path) -> None:
    plans = plan_federation(tmp_path, ["100000", "420000", "420100"])
    path = tmp_path / "province.toml"
    path.write_text(node_toml(plans["420000"], plans, sync_interval=0.25), encoding="utf-8")
    config = load_config(path, env={})
    assert config.node.region_code == "420000"
    assert config.node.data_dir == plans["420000"].data_dir
    assert config.federation.parent == plans["100000"].federation_listen
    assert dict(config.federation.children) == {"420100": plans["420100"].federation_listen}
    assert config.federation.listen == plans["420000"].federation_listen
    assert config.federation.sync_interval_seconds == 0.25
    assert config.federation.tls_cert == plans["420000"].data_dir / "pki" / "node.crt"


def test_one_deployment_for_every_node(tmp_path: Path) -> None:
    regions = ["100000", "420000", "430000"]
    departments = {"湖北省市场监督管理局": HUBEI_SAMR, "湖南省市场监督管理局": HUNAN_SAMR}
    plans = LocalFederation.prepare(tmp_path, regions, departments=departments)
    configs = {c: load_config(p.config_path, env={}) for c, p in plans.items()}
    hunan, hubei = Deployment.open(configs["430000"]), Deployment.open(configs["420000"])
    assert hunan.root_certificate == hubei.root_certificate
    assert hunan.ca_certificate != hubei.ca_certificate
    assert [d.uscc for d in hunan.departments()] == [HUNAN_SAMR]
    assert [d.uscc for d in hubei.departments()] == [HUBEI_SAMR]
    assert Deployment.open(configs["100000"]).departments() == []

    # a licence signed in Hunan verifies with the federation's one trust bundle
    token = hunan.sign_licence_jws(HUNAN_SAMR, {"证照标识": "demo"}).encode()
    bundle = federation_bundle(configs.values())
    verdict = verify_document(token, bundle.trust, bundle.registry())
    assert verdict.valid, verdict.message
    assert verdict.department is not None
    assert verdict.department.uscc == HUNAN_SAMR

    # node TLS certificates chain to the same root; the audit holder key is shared
    root = DeploymentRoot.open_or_create(tmp_path / "deployment")
    verifier = NodeVerifier([root.root.certificate])
    for code, config in configs.items():
        fed = config.federation
        creds = NodeTlsFiles(fed.tls_cert, fed.tls_key, fed.tls_ca).load()
        assert verifier.verify(creds.certificate, creds.chain).region_code == code
    holder_keys = {(c.keys_dir / "audit-holder.key").read_bytes() for c in configs.values()}
    assert len(holder_keys) == 1

    # again on the same directory: everything kept
    before = hunan.ca_certificate
    LocalFederation.prepare(tmp_path, regions, departments=departments)
    assert Deployment.open(configs["430000"]).ca_certificate == before
    assert len(Deployment.open(configs["430000"]).departments()) == 1
