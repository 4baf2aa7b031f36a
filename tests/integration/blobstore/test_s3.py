"""S3-only behaviour against real SeaweedFS: credentials, outages, bucket set-up.

Example::

    .venv/bin/pytest tests/integration/blobstore/test_s3.py -q
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.seaweedfs import S3Server, closed_port, running_weed
from zhida.blobstore import BlobStore, S3BlobStore, object_key, open_blobstore
from zhida.blobstore.s3 import make_http_client
from zhida.config import BlobStoreConfig, S3Config
from zhida.errors import IntegrityError, Unavailable

pytestmark = pytest.mark.integration

FAST = 5.0  # seconds within which a dead backend must be reported


def _open(cfg: S3Config) -> BlobStore:
    return open_blobstore(BlobStoreConfig("s3", Path("unused"), cfg))


def _assert_fast_unavailable(call: Callable[[], object], reason: str) -> Unavailable:
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        call()
    elapsed = time.monotonic() - started
    assert elapsed < FAST, f"took {elapsed:.1f} s"
    assert info.value.reason == reason, info.value
    return info.value


# --- credentials -------------------------------------------------------------


def _wrong_secret(cfg: S3Config) -> S3Config:
    return dataclasses.replace(cfg, secret_key="wrong-secret-key-123")


def _unknown_user(cfg: S3Config) -> S3Config:
    return dataclasses.replace(cfg, access_key="no-such-user")


@pytest.mark.parametrize("spoil", [_wrong_secret, _unknown_user])
def test_bad_credentials_are_access_denied(
    s3_server: S3Server, spoil: Callable[[S3Config], S3Config]
) -> None:
    cfg = spoil(s3_server.s3_config())
    err = _assert_fast_unavailable(lambda: _open(cfg), "BLOBSTORE_ACCESS_DENIED")
    assert "credentials" in err.message or "access_key" in err.message
    assert cfg.secret_key not in err.message


def test_bad_credentials_on_existing_bucket(s3_server: S3Server) -> None:
    good = s3_server.s3_config()
    digest = S3BlobStore(good).put(b"guarded")
    bad = S3BlobStore(dataclasses.replace(good, secret_key="nope-nope-nope"), create_bucket=False)
    # Refused, never mistaken for "not found" or served.
    for call in (lambda: bad.get(digest), lambda: bad.exists(digest), bad.check):
        _assert_fast_unavailable(call, "BLOBSTORE_ACCESS_DENIED")
    _assert_fast_unavailable(lambda: bad.put(b"intruder"), "BLOBSTORE_ACCESS_DENIED")


# --- unreachable and failing servers -----------------------------------------


def test_unreachable_endpoint_fails_fast() -> None:
    cfg = S3Config(f"127.0.0.1:{closed_port()}", "zhida-x", "k", "s", False, "us-east-1")
    err = _assert_fast_unavailable(lambda: _open(cfg), "BLOBSTORE_UNAVAILABLE")
    assert cfg.endpoint in err.message
    store = S3BlobStore(cfg, create_bucket=False)
    digest = hashlib.sha256(b"x").hexdigest()
    for call in (store.check, lambda: store.get(digest), lambda: store.put(b"x")):
        _assert_fast_unavailable(call, "BLOBSTORE_UNAVAILABLE")


def test_silent_server_hits_the_read_timeout() -> None:
    # Accepts TCP connections (kernel backlog) but never answers: only the
    # read timeout can end the wait. Shortened here to keep the test fast.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"127.0.0.1:{silent.getsockname()[1]}"
        cfg = S3Config(endpoint, "zhida-x", "k", "s", False, "us-east-1")
        http = make_http_client(connect_timeout=0.5, read_timeout=0.5)
        store = S3BlobStore(cfg, create_bucket=False, http_client=http)
        err = _assert_fast_unavailable(store.check, "BLOBSTORE_UNAVAILABLE")
    assert "ReadTimeoutError" in err.message


def test_server_outage_is_unavailable(tmp_path: Path) -> None:
    # A second, private SeaweedFS (all ports are chosen free) that this test
    # may kill without disturbing the session server.
    with running_weed(tmp_path / "doomed") as server:
        store = S3BlobStore(server.s3_config())
        digest = store.put(b"written before the outage")
        assert store.get(digest) == b"written before the outage"
        server.stop()
        for call in (
            store.check,
            lambda: store.get(digest),
            lambda: store.exists(digest),
            lambda: store.put(b"written during the outage"),
            lambda: store.delete(digest),
        ):
            _assert_fast_unavailable(call, "BLOBSTORE_UNAVAILABLE")


# --- bucket and object details -----------------------------------------------


def test_bucket_is_created_at_open(s3_server: S3Server) -> None:
    cfg = s3_server.s3_config()
    client = s3_server.client()
    assert not client.bucket_exists(cfg.bucket)
    _open(cfg).check()
    assert client.bucket_exists(cfg.bucket)


def test_concurrent_opens_race_to_create_the_bucket(s3_server: S3Server) -> None:
    cfg = s3_server.s3_config()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            _open(cfg).check()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_check_reports_a_vanished_bucket(s3_server: S3Server) -> None:
    cfg = s3_server.s3_config()
    store = _open(cfg)
    s3_server.client().remove_bucket(cfg.bucket)
    err = _assert_fast_unavailable(store.check, "BLOBSTORE_UNAVAILABLE")
    assert cfg.bucket in err.message


def test_object_layout_and_checksum_metadata(s3_server: S3Server) -> None:
    cfg = s3_server.s3_config()
    data = b"metadata check"
    digest = _open(cfg).put(data)
    stat = s3_server.client().stat_object(cfg.bucket, object_key(digest))
    assert stat.object_name == f"sha256/{digest[:2]}/{digest[2:4]}/{digest}"
    assert stat.size == len(data)
    headers = {k.lower(): v for k, v in (stat.metadata or {}).items()}
    assert headers["x-amz-meta-sha256"] == digest


def test_forged_metadata_does_not_fool_reads(s3_server: S3Server) -> None:
    # Someone replaces the object and copies our metadata: reads still re-hash.
    cfg = s3_server.s3_config()
    store = _open(cfg)
    digest = store.put(b"genuine")
    forged = b"forged!"
    key = object_key(digest)
    s3_server.client().put_object(
        cfg.bucket, key, io.BytesIO(forged), len(forged), metadata={"sha256": digest}
    )
    with pytest.raises(IntegrityError) as info:
        store.get(digest)
    assert info.value.reason == "BLOB_HASH_MISMATCH"
