"""verify_document: one entry point for JWS and PDF, one opaque verdict with a reason."""

from __future__ import annotations

import base64
import json

from signing.canonical import b64url_decode, b64url_encode
from signing.errors import Failure
from signing.jws import sign_jws
from signing.seal import SealRevocations
from signing.verify import detect_kind, verify_document
from tests.unit.signing.conftest import World

LICENCE = {"证照编号": "JY14201020000001", "持证主体": "武汉市江岸区某某餐饮有限公司"}


def _token(world: World) -> str:
    return sign_jws(LICENCE, world.store, "scj-2025", world.scj_chain, world.seal.seal_id)


def _check(world: World, data: bytes, **kw: object) -> Failure | None:
    result = verify_document(data, world.bundle, world.registry(), **kw)  # type: ignore[arg-type]
    assert result.valid is (result.failure is None)
    return result.failure


def test_detects_the_kind() -> None:
    assert detect_kind(b"%PDF-1.7\n...") == "pdf"
    assert detect_kind(b"eyJh.eyJi.c2ln\n") == "jws"
    assert detect_kind(b"hello world") == "unknown"


def test_valid_jws(world: World) -> None:
    result = verify_document(_token(world).encode() + b"\n", world.bundle, world.registry())
    assert result.valid
    assert result.kind == "jws"
    assert result.payload is not None
    assert result.payload["证照编号"] == "JY14201020000001"
    assert result.reason == "VALID"
    assert "under seal" in result.summary()


def test_alg_none_swapped_x5c_and_changed_bytes(world: World) -> None:
    token = _token(world)
    h64, p64, s64 = token.split(".")
    header = json.loads(b64url_decode(h64))
    none = b64url_encode(json.dumps({**header, "alg": "none"}).encode())
    assert _check(world, f"{none}.{p64}.".encode()) is Failure.ALG_NOT_ALLOWED
    other = sign_jws(LICENCE, world.store, "mzj-2025", world.mzj_chain, world.mzj_seal.seal_id)
    swapped_header = {**header, "x5c": json.loads(b64url_decode(other.split(".")[0]))["x5c"]}
    swapped = b64url_encode(json.dumps({**swapped_header, "alg": "EdDSA"}).encode())
    assert _check(world, f"{swapped}.{p64}.{s64}".encode()) is Failure.BAD_SIGNATURE
    for i in range(0, len(token), 7):
        changed = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        assert _check(world, changed.encode()) is not None


def test_extra_seal_revocations_and_garbage(world: World) -> None:
    revoked = SealRevocations([(world.seal.seal_id, world.now, "单位撤销")])
    assert _check(world, _token(world).encode(), revocations=revoked) is Failure.SEAL_REVOKED
    assert _check(world, b"hello") is Failure.MALFORMED
    assert _check(world, base64.b64encode(b"x" * 40)) is Failure.MALFORMED
