"""Blob store on an S3-compatible server (AWS S3, MinIO, SeaweedFS, Ceph RGW).

Objects live at ``s3://<bucket>/sha256/ab/cd/<digest>``; the bucket is created
at open if missing. Uploads are a single PutObject: S3 makes an object visible
only once its whole body has been received, so no reader ever sees a partial
blob and no temp-and-rename dance is needed. Each PUT carries the digest twice:
``x-amz-checksum-sha256`` (the server verifies the body against it and rejects
a PUT damaged in transit) and ``x-amz-meta-sha256`` (hex, for operators and for
the idempotent-put shortcut). Reads are still re-hashed client-side, because
anyone with write access to the bucket can replace an object.

The HTTP client is tuned so that a dead server fails fast: 2 s connect timeout,
10 s read timeout, one retry of a failed connect or read, two of a 5xx, and
no honouring of ``Retry-After``. An unreachable endpoint yields ``Unavailable``
within a few seconds instead of minio's default five-minute timeouts.

Example::

    from zhida.blobstore import S3BlobStore
    from zhida.config import S3Config

    cfg = S3Config("127.0.0.1:8333", "zhida", "key", "secret", False, "us-east-1")
    with S3BlobStore(cfg) as store:
        digest = store.put(b"hello")
        assert store.get(digest) == b"hello"
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from minio.helpers import MAX_PART_SIZE, check_bucket_name

from zhida.blobstore.base import BlobStore, access_denied, unavailable
from zhida.config import S3Config
from zhida.errors import ConfigError, InvalidArgument

_BACKEND = "s3"
META_SHA256 = "sha256"  # sent as x-amz-meta-sha256

# Error codes that mean "these credentials may not do this": never retryable,
# the operator has to fix the configuration.
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidSecurity",
    }
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchObject"})
_CORRUPT_UPLOAD_CODES = frozenset({"BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"})
_CREDENTIALS_HINT = (
    "check blobstore.s3.access_key / secret_key (or AWS_ACCESS_KEY_ID / "
    "AWS_SECRET_ACCESS_KEY) and the bucket policy"
)


def make_http_client(
    *, connect_timeout: float = 2.0, read_timeout: float = 10.0
) -> urllib3.PoolManager:
    """The urllib3 pool minio talks through, with fail-fast timeouts and retries.

    Worst cases per call: refused connection well under 1 s; black-holed host
    2 x connect_timeout; hung server 2 x read_timeout.
    """
    retry = urllib3.Retry(
        total=3,
        connect=1,
        # One read retry covers a pooled keep-alive connection the server has
        # closed meanwhile. Retrying is safe for PUT too: content-addressed
        # writes are idempotent.
        read=1,
        status=2,
        backoff_factor=0.2,
        backoff_max=1.0,
        status_forcelist=(500, 502, 503, 504),
        # A throttling server may ask for minutes; we would rather report
        # Unavailable and let the gRPC client retry with its own deadline.
        respect_retry_after_header=False,
    )
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        retries=retry,
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )


class S3BlobStore(BlobStore):
    """Blob store in one S3 bucket; creates the bucket unless told not to."""

    backend = _BACKEND

    def __init__(
        self,
        cfg: S3Config,
        *,
        create_bucket: bool = True,
        http_client: urllib3.PoolManager | None = None,
    ) -> None:
        self.bucket = cfg.bucket
        self.endpoint = cfg.endpoint
        self._http = http_client or make_http_client()
        try:
            self._client = Minio(
                cfg.endpoint,
                access_key=cfg.access_key,
                secret_key=cfg.secret_key,
                secure=cfg.secure,
                # Given explicitly so minio never issues GetBucketLocation first.
                region=cfg.region,
                http_client=self._http,
            )
        except ValueError as exc:
            raise ConfigError("blobstore.s3.endpoint", str(exc)) from exc
        try:
            # Stricter than config.py's check (lowercase, no CJK letters);
            # minio would raise a bare ValueError on first use otherwise.
            check_bucket_name(cfg.bucket, strict=True)
        except ValueError as exc:
            raise ConfigError("blobstore.s3.bucket", str(exc)) from exc
        if create_bucket:
            self._ensure_bucket()

    def __repr__(self) -> str:
        return f"S3BlobStore(endpoint={self.endpoint!r}, bucket={self.bucket!r})"

    def close(self) -> None:
        self._http.clear()

    def check(self) -> None:
        with self._errors("check bucket"):
            found = self._client.bucket_exists(self.bucket)
        if not found:
            raise unavailable(_BACKEND, f"bucket {self.bucket!r} does not exist at {self.endpoint}")

    # --- primitives ------------------------------------------------------------

    def _ensure_bucket(self) -> None:
        with self._errors("open"):
            if self._client.bucket_exists(self.bucket):
                return
            try:
                self._client.make_bucket(self.bucket)
            except S3Error as exc:
                # Another node (or worker) created it between our HEAD and PUT.
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
                # "AlreadyExists" may mean someone else's bucket: confirm access.
                self._client.bucket_exists(self.bucket)

    def _read(self, key: str) -> bytes | None:
        with self._errors(f"get {key}"):
            try:
                response = self._client.get_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in _NOT_FOUND_CODES:
                    return None
                raise
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def _is_stored(self, key: str, digest: str, size: int) -> bool:
        # A HEAD instead of re-uploading: the same attachment often arrives
        # many times. An object replaced behind our back loses (or keeps a
        # wrong) x-amz-meta-sha256 and is rewritten; reads re-hash anyway.
        with self._errors(f"stat {key}"):
            try:
                stat = self._client.stat_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in _NOT_FOUND_CODES:
                    return False
                raise
        meta = _lower_keys(stat.metadata or {})
        return stat.size == size and meta.get(f"x-amz-meta-{META_SHA256}") == digest

    def _write(self, key: str, digest: str, data: bytes) -> None:
        if len(data) > MAX_PART_SIZE:
            # Multipart would lose both the single-request atomicity argument
            # and the whole-object checksum; blobs this big have no place here.
            raise InvalidArgument(
                f"blob of {len(data)} bytes exceeds the single-PUT limit of {MAX_PART_SIZE}"
            )
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
        with self._errors(f"put {key}"):
            self._client.put_object(
                self.bucket,
                key,
                io.BytesIO(data),
                len(data),
                metadata={META_SHA256: digest, "x-amz-checksum-sha256": checksum},
                # part_size = max: always a single PutObject, never multipart.
                part_size=MAX_PART_SIZE,
            )

    def _exists(self, key: str) -> bool:
        with self._errors(f"stat {key}"):
            try:
                self._client.stat_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in _NOT_FOUND_CODES:
                    return False
                raise
        return True

    def _delete(self, key: str) -> None:
        # S3 DeleteObject succeeds for absent keys, matching our contract.
        with self._errors(f"delete {key}"):
            self._client.remove_object(self.bucket, key)

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Translate minio/urllib3 failures into zhida's typed errors."""
        where = f"{action} (bucket {self.bucket!r} at {self.endpoint})"
        try:
            yield
        except S3Error as exc:
            if exc.code in _DENIED_CODES:
                raise access_denied(_BACKEND, f"{where}: {exc.code}", _CREDENTIALS_HINT) from exc
            if exc.code == "NoSuchBucket":
                raise unavailable(_BACKEND, f"{where}: the bucket does not exist") from exc
            if exc.code in _CORRUPT_UPLOAD_CODES:
                raise unavailable(
                    _BACKEND, f"{where}: upload damaged in transit ({exc.code}); retry"
                ) from exc
            raise unavailable(_BACKEND, f"{where}: {exc.code}: {exc.message}") from exc
        except MinioException as exc:  # ServerError (5xx), InvalidResponseError
            raise unavailable(_BACKEND, f"{where}: {exc}") from exc
        except urllib3.exceptions.MaxRetryError as exc:
            raise unavailable(_BACKEND, f"{where}: {_short(exc.reason)}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise unavailable(_BACKEND, f"{where}: {_short(exc)}") from exc


def _lower_keys(headers: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in headers.items()}


def _short(exc: BaseException | None) -> str:
    """urllib3 errors repeat the pool repr; keep the class and the cause."""
    if exc is None:
        return "request failed"
    text = str(exc)
    return f"{type(exc).__name__}: {text[-200:]}"
