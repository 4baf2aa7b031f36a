"""Offline verification with cached trust material and status lists (`zhida licence verify`)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from licence_vault.offline import CachedNode, offline_verifier
from licence_vault.signer import KeyStoreSigner
from licence_vault.vault import Actor, Vault
from signing.seal import SealRevocations
from tests.unit.licence_vault.conftest import Clock
from tests.unit.licence_vault.support import JIANGAN_SAMR, business_licence
from zhida.licence.v1 import licence_vault_service_pb2 as pb


class VaultStub:
    """What a node answers to GetTrustMaterial and GetStatusList; seal revocations settable."""

    def __init__(self, vault: Vault, signer: KeyStoreSigner) -> None:
        self.vault = vault
        self.signer = signer
        self.revocations = SealRevocations()
        self.trust_calls = 0

    def GetTrustMaterial(self, request: Any, **_: Any) -> pb.GetTrustMaterialResponse:
        self.trust_calls += 1
        return pb.GetTrustMaterialResponse(
            trust_bundle_json=self.signer.trust_bundle().to_json(),
            seals_json=[s.to_json() for s in self.signer.seals()],
            seal_revocations_json=self.revocations.to_json(),
            seal_maker_keys_pem=[
                k.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
                for k in self.signer.seal_maker_keys()
            ],
            status_list_base_uri=self.vault.status_base_uri,
        )

    def GetStatusList(self, request: Any, **_: Any) -> pb.GetStatusListResponse:
        token = self.vault.status_list_token(self.vault.issuer_for_uri(request.uri))
        return pb.GetStatusListResponse(token=token, uri=request.uri)


def test_refresh_fetches_the_trust_material_anew(
    vault: Vault, issuer: Actor, signer: KeyStoreSigner, clock: Clock, tmp_path: Path
) -> None:
    jws = vault.issue(issuer, business_licence()).jws
    stub = VaultStub(vault, signer)
    node = CachedNode(tmp_path / "cache", stub, ())
    assert offline_verifier(node).verify(jws).valid
    # the issuer's seal is revoked at the node; the cached trust material does not know yet
    seal_id = signer.issuer(JIANGAN_SAMR).seal_id
    stub.revocations.revoke(seal_id, "印章遗失", clock.now - timedelta(days=1))
    assert offline_verifier(node).verify(jws).valid
    assert stub.trust_calls == 1  # fetched once, then the cache
    refreshed = offline_verifier(node, refresh=True).verify(jws)
    assert (refreshed.valid, refreshed.reason) == (False, "SEAL_REVOKED")
    assert stub.trust_calls == 2
    # the refreshed material is what the cache holds now
    assert offline_verifier(node).verify(jws).reason == "SEAL_REVOKED"
    assert stub.trust_calls == 2
