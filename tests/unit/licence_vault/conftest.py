"""Fixtures for the vault tests: one development signing deployment per session, a vault per test.

The deployment (CAs, department keys, certificates and seals for every
``DEMO_ORGS`` department) takes a second or two to make, so it is made once
and copied into each test's directory; opening a copy takes milliseconds.
``pdf_vault`` is a vault on the node's signing deployment facade (sealed PDFs),
made the same way for two departments.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from licence_vault.deployment_signer import DeploymentPdf, DeploymentSigner, open_deployment
from licence_vault.signer import KeyStoreSigner, open_dev_signer
from licence_vault.sql import SqlLicenceStore
from licence_vault.vault import Actor, Vault
from signing.deployment import Deployment
from tests.unit.licence_vault.support import JIANGAN_SAMR, PORTAL, WUHAN_SAMR
from zhida.auth.mint import DEMO_ORGS
from zhida.blobstore import FilesystemBlobStore
from zhida.config import Config, load_config
from zhida.db import Database
from zhida.db.migrate import upgrade

STATUS_BASE = "zhida://test-node/licence/status-lists"
DEPARTMENTS = {"武汉市江岸区市场监督管理局": JIANGAN_SAMR, "武汉市市场监督管理局": WUHAN_SAMR}


@pytest.fixture(scope="session")
def signing_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("licence-signing")
    open_dev_signer(directory, DEMO_ORGS)
    return directory


@pytest.fixture
def signer(signing_template: Path, tmp_path: Path) -> KeyStoreSigner:
    directory = tmp_path / "signing"
    shutil.copytree(signing_template, directory)
    return open_dev_signer(directory, DEMO_ORGS)


class Clock:
    """A settable clock for the vault."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'vault.db'}"
    upgrade(url)
    db = Database(url, pool_size=4)
    yield db
    db.dispose()


@pytest.fixture
def blobs(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "blobs")


@pytest.fixture
def make_vault(
    blobs: FilesystemBlobStore, signer: KeyStoreSigner, clock: Clock
) -> Callable[[Database], Vault]:
    def build(database: Database) -> Vault:
        return Vault(
            SqlLicenceStore(database), blobs, signer, status_base_uri=STATUS_BASE, clock=clock
        )

    return build


@pytest.fixture
def vault(make_vault: Callable[[Database], Vault], sqlite_db: Database) -> Vault:
    """A vault on SQLite (domain tests); store tests use both dialects."""
    return make_vault(sqlite_db)


@pytest.fixture
def issuer() -> Actor:
    return Actor(JIANGAN_SAMR, "clerk-wang", "420102")


@pytest.fixture
def portal() -> Actor:
    return Actor(PORTAL, "portal-backend", "420106")


def deployment_config(directory: Path) -> Config:
    return load_config(
        None,
        env={"ZHIDA_NODE__DATA_DIR": str(directory), "ZHIDA_NODE__REGION_CODE": "420102"},
    )


@pytest.fixture(scope="session")
def deployment_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("deployment")
    open_deployment(deployment_config(directory), DEPARTMENTS)
    return directory


@pytest.fixture
def deployment(deployment_template: Path, tmp_path: Path) -> Deployment:
    directory = tmp_path / "node"
    shutil.copytree(deployment_template, directory)
    return open_deployment(deployment_config(directory), DEPARTMENTS)


@pytest.fixture
def pdf_vault(
    deployment: Deployment, sqlite_db: Database, blobs: FilesystemBlobStore, clock: Clock
) -> Vault:
    return Vault(
        SqlLicenceStore(sqlite_db),
        blobs,
        DeploymentSigner(deployment),
        pdf=DeploymentPdf(deployment),
        status_base_uri=STATUS_BASE,
        clock=clock,
    )


__all__ = ["DEMO_ORGS", "DEPARTMENTS", "Clock", "deployment_config"]
