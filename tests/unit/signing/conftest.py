"""One small deployment for the signing tests: a PKI, keys, a seal and a trust bundle.

National root → 湖北 province CA → 武汉 city CA → two department certificates
(江岸区市场监督管理局 with an ES256 key, 江岸区民政局 with an Ed25519 key), a seal
maker key, one licence seal bound to the market-regulation certificate, and a
trust bundle with a current CRL for every CA.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from PIL import Image

from signing.deployment import Deployment
from signing.keystore import FileKeyStore
from signing.pki import CertificateAuthority, create_crl, create_intermediate_ca, create_root_ca
from signing.pki import issue_department_cert as issue
from signing.seal import Seal, SealPicture, SealPurpose, SealRegistry, create_seal
from signing.trust import TrustBundle
from zhida.config import Config, load_config
from zhida.regions import Level

SCJ_NAME = "武汉市江岸区市场监督管理局"
SCJ_USCC = "11420102MB1A23456R"
MZJ_NAME = "武汉市江岸区民政局"
MZJ_USCC = "11420102MB3333333T"


def _tiny_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (1, 1), (218, 28, 36, 255)).save(out, format="PNG")
    return out.getvalue()


TINY_PNG = _tiny_png()  # so most tests need no CJK font


@dataclass
class World:
    now: datetime
    root: CertificateAuthority
    province: CertificateAuthority
    city: CertificateAuthority
    store: FileKeyStore
    scj_cert: x509.Certificate
    mzj_cert: x509.Certificate
    seal: Seal
    mzj_seal: Seal
    bundle: TrustBundle

    @property
    def scj_chain(self) -> list[x509.Certificate]:
        return [self.scj_cert, self.city.certificate, self.province.certificate]

    @property
    def mzj_chain(self) -> list[x509.Certificate]:
        return [self.mzj_cert, self.city.certificate, self.province.certificate]

    def registry(self) -> SealRegistry:
        """A fresh registry (its revocation list is the caller's to change)."""
        return SealRegistry([self.store.public_key("seal-maker")], seals=[self.seal, self.mzj_seal])

    def crls(self, *revoked_in_city: int | object) -> tuple[x509.CertificateRevocationList, ...]:
        return (
            create_crl(self.root, [], now=self.now),
            create_crl(self.province, [], now=self.now),
            create_crl(self.city, list(revoked_in_city), now=self.now),  # type: ignore[arg-type]
        )


def make_seal(
    world_store: FileKeyStore,
    cert: x509.Certificate,
    owner: str,
    uscc: str,
    now: datetime,
    *,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
) -> Seal:
    return create_seal(
        world_store,
        "seal-maker",
        purpose=SealPurpose.LICENCE,
        owner_name=owner,
        owner_uscc=uscc,
        signer_certificates=[cert],
        valid_from=valid_from or now - timedelta(days=1),
        valid_until=valid_until or now + timedelta(days=3 * 365),
        picture=SealPicture(TINY_PNG),
        now=now,
    )


@dataclass
class EndedSigner:
    """A department key whose certificate was valid for one day, ending two days ago,
    under a seal that is still valid: only the certificate's end can refuse it."""

    store: FileKeyStore
    key_id: str
    certificate: x509.Certificate
    seal: Seal
    registry: SealRegistry

    def chain(self, world: World) -> list[x509.Certificate]:
        return [self.certificate, world.city.certificate, world.province.certificate]


def ended_signer(world: World, directory: Path) -> EndedSigner:
    store = FileKeyStore(directory, dev_mode=True)
    key = store.generate("scj-ended", "ES256")
    start = world.now - timedelta(days=3)
    cert = issue(
        world.city, SCJ_NAME, SCJ_USCC, key.public_key, timedelta(days=1), not_before=start
    )
    seal = make_seal(world.store, cert, SCJ_NAME, SCJ_USCC, world.now, valid_from=start)
    registry = SealRegistry([world.store.public_key("seal-maker")], seals=[seal])
    return EndedSigner(store, "scj-ended", cert, seal, registry)


def build_world(directory: Path) -> World:
    now = datetime.now(UTC).replace(microsecond=0)
    root = create_root_ca("国家政务服务平台根CA", now=now - timedelta(days=30))
    month_ago = now - timedelta(days=30)
    province = create_intermediate_ca(root, "湖北省政务服务CA", Level.PROVINCE, now=month_ago)
    city = create_intermediate_ca(province, "武汉市政务服务CA", Level.CITY, now=month_ago)
    store = FileKeyStore(directory, dev_mode=True)
    scj_key = store.generate("scj-2025", "ES256")
    mzj_key = store.generate("mzj-2025", "EdDSA")
    store.generate("seal-maker", "ES256")
    day_ago = now - timedelta(days=1)
    scj_cert = issue(city, SCJ_NAME, SCJ_USCC, scj_key.public_key, not_before=day_ago)
    mzj_cert = issue(city, MZJ_NAME, MZJ_USCC, mzj_key.public_key, not_before=day_ago)
    world = World(
        now=now,
        root=root,
        province=province,
        city=city,
        store=store,
        scj_cert=scj_cert,
        mzj_cert=mzj_cert,
        seal=make_seal(store, scj_cert, SCJ_NAME, SCJ_USCC, now),
        mzj_seal=make_seal(store, mzj_cert, MZJ_NAME, MZJ_USCC, now),
        bundle=TrustBundle(roots=(root.certificate,)),
    )
    world.bundle = TrustBundle(
        roots=(root.certificate,),
        intermediates=(province.certificate, city.certificate),
        crls=world.crls(),
    )
    return world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("keys"))


# -- deployments on disk (signing.deployment) ---------------------------------------

DEPT_NAME = "武汉市市场监督管理局"
DEPT_USCC = "11420100MB00000009"


def deployment_config(directory: Path, **settings: str) -> Config:
    env = {"ZHIDA_NODE__DATA_DIR": str(directory), "ZHIDA_NODE__REGION_CODE": "420100"}
    env.update({f"ZHIDA_{k.upper()}": v for k, v in settings.items()})
    return load_config(None, env=env)


def make_deployment(directory: Path, *, seal: bool = True) -> Deployment:
    """A dev-mode (unencrypted) deployment with one department and, by default, its seal."""
    deployment = Deployment.init(deployment_config(directory), env={})
    deployment.issue_department_cert(DEPT_NAME, DEPT_USCC)
    if seal:
        deployment.create_seal(DEPT_USCC, valid_days=365)
    return deployment


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """Shared and read-only: tests that revoke or add make their own."""
    return make_deployment(tmp_path_factory.mktemp("deployment"))
