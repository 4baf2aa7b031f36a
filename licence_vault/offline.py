"""Verifying licences away from the vault: trust material and status lists cached on disk.

:class:`CachedNode` fetches a node's trust material (trust bundle, seals, seal
revocations, seal-maker keys) once — again on ``refresh`` (``zhida licence
verify --refresh``), which is how a revoked seal or certificate reaches an
offline verifier — and each issuer's signed status list when the cached
copy's ``ttl`` is over, keeping both in a directory;
:func:`offline_verifier` builds a :class:`~licence_vault.verify.LicenceVerifier`
on them: signatures, seals and chains are checked locally, the status comes
from the cached, signature-checked Token Status List.

Example::

    node = CachedNode(Path("~/.cache/zhida").expanduser(), stub, metadata)
    result = offline_verifier(node).verify(token)
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from licence_vault.status_list import StatusListCache
from licence_vault.verify import LicenceVerifier, status_list_source
from signing.bundle import VerifierBundle
from signing.canonical import b64url_decode
from signing.jws import JwsVerifier
from signing.seal import Seal, SealRegistry, SealRevocations
from signing.trust import ChainVerifier, TrustBundle
from zhida.errors import NotFound
from zhida.files import atomic_write
from zhida.licence.v1 import licence_vault_service_pb2 as pb

__all__ = ["CachedNode", "cached_status_token", "file_verifier", "offline_verifier"]


class CachedNode:
    """Trust material and status lists from a node, kept in a cache directory.

    The trust material is fetched once and a status list is reused while its
    ``ttl`` lasts; ``refresh`` (``--refresh``) fetches both anew. Verification
    works without the node for as long as the cached list may be used.
    """

    def __init__(self, cache: Path, stub: Any, metadata: Sequence[tuple[str, str]]) -> None:
        self.cache = cache
        self.stub = stub
        self.metadata = metadata
        cache.mkdir(parents=True, exist_ok=True)

    def trust(self, refresh: bool = False) -> pb.GetTrustMaterialResponse:
        path = self.cache / "trust-material.json"
        if path.exists() and not refresh:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return pb.GetTrustMaterialResponse(**doc)
        reply: pb.GetTrustMaterialResponse = self.stub.GetTrustMaterial(
            pb.GetTrustMaterialRequest(), metadata=self.metadata, timeout=30
        )
        doc = {
            "trust_bundle_json": reply.trust_bundle_json,
            "seals_json": list(reply.seals_json),
            "seal_revocations_json": reply.seal_revocations_json,
            "seal_maker_keys_pem": list(reply.seal_maker_keys_pem),
            "status_list_base_uri": reply.status_list_base_uri,
        }
        # atomic: a verifier reading the cache never sees half a file
        atomic_write(path, json.dumps(doc, ensure_ascii=False).encode("utf-8"), mode=0o644)
        return reply

    def status_list(self, uri: str, refresh: bool = False) -> str:
        path = _status_path(self.cache, uri)
        if path.exists() and not refresh:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("uri") == uri and time.time() < doc["fetched_at"] + _ttl(doc["token"]):
                return str(doc["token"])
        reply = self.stub.GetStatusList(
            pb.GetStatusListRequest(uri=uri), metadata=self.metadata, timeout=30
        )
        doc = {"uri": uri, "fetched_at": time.time(), "token": reply.token}
        atomic_write(path, json.dumps(doc).encode("utf-8"), mode=0o644)
        return str(reply.token)


def _status_path(cache: Path, uri: str) -> Path:
    return cache / f"status-list-{uri.rsplit('/', 1)[-1]}.json"


def cached_status_token(cache: Path, uri: str) -> str | None:
    """The status list token a :class:`CachedNode` kept for ``uri``, or None.

    Its age is not judged here: the token's own signature, ``exp`` and
    ``ttl`` are checked when it is used (:func:`file_verifier`).
    """
    try:
        doc = json.loads(_status_path(cache, uri).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    token = doc.get("token") if isinstance(doc, dict) and doc.get("uri") == uri else None
    return token if isinstance(token, str) and token else None


def file_verifier(bundle: VerifierBundle, cache: Path) -> LicenceVerifier:
    """A verifier from a trust bundle and the status lists cached in ``cache`` only.

    Nothing is fetched: a list that is not cached makes the verdict
    ``STATUS_UNAVAILABLE`` (``zhida licence verify`` fetches and caches lists).
    """
    chains = ChainVerifier(bundle.trust)

    def fetch(uri: str) -> str:
        token = cached_status_token(cache, uri)
        if token is None:
            raise NotFound(
                f"no cached status list for {uri} in {cache}", reason="STATUS_LIST_NOT_CACHED"
            )
        return token

    cached = StatusListCache(fetch, chains)
    return LicenceVerifier(JwsVerifier(chains, bundle.registry()), status_list_source(cached))


def _ttl(token: str) -> int:
    try:
        claims = json.loads(b64url_decode(token.split(".")[1]))
        return int(claims.get("ttl", 300))
    except (ValueError, IndexError, TypeError):
        return 0


def offline_verifier(node: CachedNode, refresh: bool = False) -> LicenceVerifier:
    """A verifier on ``node``'s cached trust material and status lists (``refresh``: both
    fetched anew first)."""
    trust = node.trust(refresh)
    bundle = TrustBundle.from_json(trust.trust_bundle_json)
    makers = [load_pem_public_key(k.encode()) for k in trust.seal_maker_keys_pem]
    registry = SealRegistry(
        makers,
        SealRevocations.from_json(trust.seal_revocations_json or "[]"),
        [Seal.from_json(s) for s in trust.seals_json],
    )
    chains = ChainVerifier(bundle)
    cache = StatusListCache(lambda uri: node.status_list(uri, refresh), chains)
    return LicenceVerifier(JwsVerifier(chains, registry), status_list_source(cache))
