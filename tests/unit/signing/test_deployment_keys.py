"""The deployment over any KeyStore: CA work needs the optional certificate_issuer_key.

``HsmLikeStore`` is what an HSM backend would do: it never holds key bytes,
it hands cryptography's builders a key *object* whose ``sign`` goes through
the store's own ``sign`` (here a FileKeyStore stands in for the device).
"""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.utils import Buffer

from signing.algorithms import Algorithm
from signing.deployment import Deployment
from signing.errors import KeyStoreError
from signing.keystore import CaKeyStore, FileKeyStore, KeyHandle, KeyInfo, KeyStore
from tests.unit.signing.conftest import DEPT_NAME, DEPT_USCC, deployment_config


class PlainStore(KeyStore):
    """Only the KeyStore interface: signs documents, cannot do CA work."""

    def __init__(self, inner: FileKeyStore) -> None:
        self.inner = inner

    def generate(self, key_id: str, algorithm: Algorithm | str = "ES256") -> KeyInfo:
        return self.inner.generate(key_id, algorithm)

    def handle(self, key_id: str) -> KeyHandle:
        return self.inner.handle(key_id)

    def list(self) -> builtins.list[KeyInfo]:
        return self.inner.list()

    def retire(self, key_id: str) -> KeyInfo:
        return self.inner.retire(key_id)


class _DeviceKey(ec.EllipticCurvePrivateKey):
    """A P-256 key whose private half stays in the store: every signature is a store call."""

    def __init__(self, store: KeyStore, key_id: str, calls: list[str]) -> None:
        self._store, self._key_id, self._calls = store, key_id, calls

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        assert isinstance(signature_algorithm, ec.ECDSA)
        assert isinstance(signature_algorithm.algorithm, hashes.SHA256)  # ES256
        self._calls.append(self._key_id)
        jose = self._store.sign(self._key_id, bytes(data))  # r || s
        return encode_dss_signature(int.from_bytes(jose[:32]), int.from_bytes(jose[32:]))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        key = self._store.public_key(self._key_id)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key

    @property
    def curve(self) -> ec.EllipticCurve:
        return ec.SECP256R1()

    @property
    def key_size(self) -> int:
        return 256

    def exchange(self, *args: Any) -> bytes:
        raise NotImplementedError

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise NotImplementedError("the key does not leave the device")

    def private_bytes(self, *args: Any) -> bytes:
        raise NotImplementedError("the key does not leave the device")

    def __copy__(self) -> _DeviceKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> _DeviceKey:
        return self


class HsmLikeStore(PlainStore):
    def __init__(self, inner: FileKeyStore) -> None:
        super().__init__(inner)
        self.ca_signatures: list[str] = []

    def certificate_issuer_key(self, key_id: str) -> CertificateIssuerPrivateKeyTypes:
        return _DeviceKey(self, key_id, self.ca_signatures)


def test_a_store_without_the_ca_capability_is_refused_for_ca_work(tmp_path: Path) -> None:
    store = PlainStore(FileKeyStore(tmp_path / "keys", dev_mode=True))
    assert not isinstance(store, CaKeyStore)
    with pytest.raises(KeyStoreError) as err:
        Deployment.init(deployment_config(tmp_path), key_store=store)
    assert err.value.reason == "CA_SIGNING_UNSUPPORTED"
    assert "certificate_issuer_key" in err.value.message


def test_ca_work_through_a_key_object_of_the_store(tmp_path: Path) -> None:
    store = HsmLikeStore(FileKeyStore(tmp_path / "keys", dev_mode=True))
    assert isinstance(store, CaKeyStore)
    config = deployment_config(tmp_path)
    deployment = Deployment.init(config, key_store=store)
    assert {"pki-root", "pki-ca-city"} <= set(store.ca_signatures)  # certificates and CRLs
    deployment.issue_department_cert(DEPT_NAME, DEPT_USCC)
    deployment.create_seal(DEPT_USCC, valid_days=30)
    token = deployment.sign_licence_jws(DEPT_USCC, {"证照编号": "H-1"})
    assert Deployment.open(config, key_store=store).verify(token.encode()).valid
