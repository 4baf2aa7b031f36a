"""FileKeyStore: encryption at rest, passphrases, dev mode, rotation."""

from __future__ import annotations

from pathlib import Path

import pytest

from signing.algorithms import ES256, Algorithm, EdDSA
from signing.errors import KeyStoreError, KeyStoreReason
from signing.keystore import FileKeyStore
from zhida.errors import AlreadyExists, InvalidArgument, NotFound

PASS_ENV = "ZHIDA_TEST_KEY_PASSPHRASE"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FileKeyStore:
    monkeypatch.setenv(PASS_ENV, "门前大桥下 游过一群鸭")
    return FileKeyStore(tmp_path, passphrase_env=PASS_ENV)


@pytest.mark.parametrize("algorithm", [ES256, EdDSA])
def test_generate_sign_verify(store: FileKeyStore, algorithm: Algorithm) -> None:
    info = store.generate("k1", algorithm.name)
    signature = store.sign("k1", b"licence bytes")
    assert len(signature) == 64
    assert info.algorithm.verify(store.public_key("k1"), signature, b"licence bytes")
    assert not info.algorithm.verify(store.public_key("k1"), signature, b"licence bytez")


def test_keys_are_encrypted_at_rest_and_reload(store: FileKeyStore, tmp_path: Path) -> None:
    store.generate("k1")
    pem = (tmp_path / "k1.key.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert (tmp_path / "k1.key.pem").stat().st_mode & 0o077 == 0
    again = FileKeyStore(tmp_path, passphrase_env=PASS_ENV)  # a new process, same files
    signature = again.sign("k1", b"x")
    assert ES256.verify(store.public_key("k1"), signature, b"x")


def test_wrong_passphrase(
    store: FileKeyStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.generate("k1")
    monkeypatch.setenv(PASS_ENV, "wrong")
    other = FileKeyStore(tmp_path, passphrase_env=PASS_ENV)
    with pytest.raises(KeyStoreError) as err:
        other.sign("k1", b"x")
    assert err.value.reason == "WRONG_PASSPHRASE"
    assert err.value.key_store_reason is KeyStoreReason.WRONG_PASSPHRASE
    # the public part stays readable without the passphrase
    assert other.public_key("k1") == store.public_key("k1")


def test_passphrase_file(tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text("s3cret passphrase\n")
    store = FileKeyStore(tmp_path / "keys", passphrase_file=secret)
    store.generate("k1")
    secret.write_text("another\n")
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        FileKeyStore(tmp_path / "keys", passphrase_file=secret).sign("k1", b"x")


def test_missing_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASS_ENV, raising=False)
    with pytest.raises(KeyStoreError) as err:
        FileKeyStore(tmp_path, passphrase_env=PASS_ENV)
    assert err.value.reason == "PASSPHRASE_MISSING"
    with pytest.raises(KeyStoreError, match="dev_mode"):
        FileKeyStore(tmp_path)
    with pytest.raises(InvalidArgument):
        FileKeyStore(tmp_path, passphrase_env=PASS_ENV, passphrase_file=tmp_path / "f")


def test_unencrypted_key_refused_outside_dev_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = FileKeyStore(tmp_path, dev_mode=True)
    dev.generate("dev-key")
    assert (tmp_path / "dev-key.key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert ES256.verify(dev.public_key("dev-key"), dev.sign("dev-key", b"x"), b"x")
    monkeypatch.setenv(PASS_ENV, "pw")
    production = FileKeyStore(tmp_path, passphrase_env=PASS_ENV)
    with pytest.raises(KeyStoreError) as err:
        production.sign("dev-key", b"x")
    assert err.value.reason == "UNENCRYPTED_KEY"


def test_rotation_keeps_old_public_keys(store: FileKeyStore, tmp_path: Path) -> None:
    store.generate("scj-2024")
    old_signature = store.sign("scj-2024", b"old licence")
    new = store.rotate("scj-2024", "scj-2025")
    assert new.algorithm is ES256
    with pytest.raises(KeyStoreError) as err:
        store.sign("scj-2024", b"new licence")
    assert err.value.reason == "KEY_RETIRED"
    assert ES256.verify(store.public_key("scj-2024"), old_signature, b"old licence")
    listed = {k.key_id: k for k in FileKeyStore(tmp_path, passphrase_env=PASS_ENV).list()}
    assert set(listed) == {"scj-2024", "scj-2025"}
    assert listed["scj-2024"].retired is not None
    assert listed["scj-2025"].retired is None
    assert ES256.verify(store.public_key("scj-2025"), store.sign("scj-2025", b"y"), b"y")


def test_key_ids_and_lookups(store: FileKeyStore) -> None:
    store.generate("k1")
    with pytest.raises(AlreadyExists):
        store.generate("k1")
    with pytest.raises(NotFound):
        store.sign("nope", b"x")
    for bad in ["", "../etc/passwd", "a/b", ".hidden", "x" * 129]:
        with pytest.raises(InvalidArgument):
            store.generate(bad)
    with pytest.raises(InvalidArgument):
        store.generate("k2", "HS256")
    with pytest.raises(InvalidArgument):
        store.generate("k3", "none")
