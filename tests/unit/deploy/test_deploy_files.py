"""deploy/: every YAML parses, kustomizations reference real files, every TOML is a valid
node configuration, the compose PKI script makes certificates that chain to one root."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml  # pyyaml is a dev dependency: a missing parser fails, never skips

from signing.node_certs import NodeTlsFiles, NodeVerifier
from zhida.config import load_config
from zhida.regions import Level

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
YAML_FILES = sorted(DEPLOY.rglob("*.yaml"))
TOML_FILES = sorted(DEPLOY.rglob("*.toml"))
KUSTOMIZATIONS = sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))
S3_ENV = {"AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "sk"}


def _yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def test_there_is_something_to_check() -> None:
    assert len(YAML_FILES) >= 10
    assert (DEPLOY / "Dockerfile").is_file()
    assert {p.name for p in KUSTOMIZATIONS} == {"base", "example"}


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = _yaml(path)
    assert docs
    if path.parent.name != "compose" and path.name != "kustomization.yaml":
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), path


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_kustomization_references_exist(directory: Path) -> None:
    (kustomization,) = _yaml(directory / "kustomization.yaml")
    referenced = list(kustomization.get("resources", []))
    for generator in kustomization.get("configMapGenerator", []):
        referenced += generator.get("files", [])
    for item in referenced:
        target = directory / item.split("=")[-1]
        assert target.exists(), f"{directory.name}: {item} does not exist"
        if target.is_dir():
            assert (target / "kustomization.yaml").is_file()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_kustomize_builds(directory: Path) -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    kinds = {
        line.split(":", 1)[1].strip()
        for line in done.stdout.splitlines()
        if line.startswith("kind:")
    }
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds
    assert "HorizontalPodAutoscaler" in kinds
    if directory.name == "example":
        assert {"StatefulSet", "Secret", "Namespace"} <= kinds


def test_node_deployment_shape() -> None:
    (deployment,) = _yaml(DEPLOY / "k8s" / "base" / "deployment.yaml")
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    (container,) = spec["template"]["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == 50051
    assert container["resources"]["requests"]["cpu"]
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    assert secrets == {"zhida-db", "zhida-s3"}


@pytest.mark.parametrize("path", TOML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_toml_is_a_valid_node_configuration(path: Path) -> None:
    config = load_config(path, env=S3_ENV)
    assert config.node.region_code


def test_compose_federation_is_four_levels() -> None:
    (compose,) = _yaml(DEPLOY / "compose" / "federation.yaml")
    services = compose["services"]
    levels = {}
    for name in ("national", "province", "city", "county"):
        service = services[name]
        mounts = [v.split(":")[0] for v in service["volumes"] if v.startswith("./")]
        assert mounts == [f"./config/{name}.toml"]
        assert (DEPLOY / "compose" / mounts[0]).is_file()
        assert f"@{name}-db:" in service["environment"]["ZHIDA_DATABASE__URL"]
        assert {f"{name}-db", f"{name}-s3"} <= set(services)
        config = load_config(DEPLOY / "compose" / "config" / f"{name}.toml", env=S3_ENV)
        assert config.blobstore.s3 is not None
        assert config.blobstore.s3.endpoint == f"{name}-s3:9000"
        levels[config.node.level] = config
    assert list(levels) == list(Level)
    # each node's parent is the node one level up, which lists it as its child
    for upper, lower in zip(list(Level)[:-1], list(Level)[1:], strict=True):
        child = levels[lower]
        assert child.federation.parent == f"{upper.name.lower()}:50051"
        assert dict(levels[upper].federation.children) == {
            child.node.region_code: f"{lower.name.lower()}:50051"
        }


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_node_certs", DEPLOY / "compose" / "make_node_certs.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compose_pki_script(tmp_path: Path) -> None:
    regions = ["100000", "420000", "420100", "420102"]
    assert _script().main([str(tmp_path), *regions]) == 0
    roots = {(tmp_path / r / "ca.crt").read_bytes() for r in regions}
    assert len(roots) == 1
    first = {r: (tmp_path / r / "node.crt").read_bytes() for r in regions}
    for region in regions:
        d = tmp_path / region
        creds = NodeTlsFiles(d / "node.crt", d / "node.key", d / "ca.crt").load()
        identity = NodeVerifier([creds.root]).verify(creds.certificate, creds.chain)
        assert identity.region_code == region
    assert _script().main([str(tmp_path), *regions, "430000"]) == 0  # adds, keeps the rest
    assert {r: (tmp_path / r / "node.crt").read_bytes() for r in regions} == first
    assert (tmp_path / "430000" / "ca.crt").read_bytes() in roots
