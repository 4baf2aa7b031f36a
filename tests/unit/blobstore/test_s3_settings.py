"""S3 settings minio would reject are reported as ConfigError before any request.

Example::

    .venv/bin/pytest tests/unit/blobstore/test_s3_settings.py -q
"""

from __future__ import annotations

import pytest

from zhida.blobstore import S3BlobStore
from zhida.config import S3Config
from zhida.errors import ConfigError


def _cfg(endpoint: str = "127.0.0.1:9", bucket: str = "zhida") -> S3Config:
    return S3Config(endpoint, bucket, "key", "secret", False, "us-east-1")


@pytest.mark.parametrize("bucket", ["Zhida", "zhida_blobs", "数据桶", "10.0.0.1", "a..b"])
def test_invalid_bucket_name(bucket: str) -> None:
    with pytest.raises(ConfigError) as info:
        S3BlobStore(_cfg(bucket=bucket), create_bucket=False)
    assert info.value.key == "blobstore.s3.bucket"


def test_endpoint_with_path_is_rejected() -> None:
    with pytest.raises(ConfigError) as info:
        S3BlobStore(_cfg(endpoint="127.0.0.1:9/zhida"), create_bucket=False)
    assert info.value.key == "blobstore.s3.endpoint"


def test_construction_without_bucket_creation_makes_no_request() -> None:
    # Port 9 (discard) is closed here; building the client must not touch it.
    store = S3BlobStore(_cfg(), create_bucket=False)
    assert store.backend == "s3"
    assert repr(store) == "S3BlobStore(endpoint='127.0.0.1:9', bucket='zhida')"
    store.close()
