"""Token crafting for the auth tests: good claims, and the bad tokens attackers send."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt

from zhida.auth.keys import PrivateKey, load_signing_key
from zhida.auth.mint import DEMO_ORGS
from zhida.config import Config

ORG = DEMO_ORGS["武汉市市场监督管理局"]


def claims(config: Config, now: float | None = None, **overrides: Any) -> dict[str, Any]:
    """A complete, valid claim set; an override of None removes that claim."""
    now = int(time.time() if now is None else now)
    base: dict[str, Any] = {
        "iss": config.auth.issuer,
        "aud": config.auth.audience,
        "sub": "clerk-7",
        "iat": now,
        "exp": now + 600,
        "jti": "jti-1",
        "role": "department",
        "org": ORG,
        "region": "420100",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(
    config: Config,
    payload: dict[str, Any],
    *,
    kid: str | None = None,
    key: PrivateKey | None = None,
    alg: str | None = None,
    header_kid: str | None = None,
) -> str:
    """Sign ``payload`` with a development key (or ``key``), header kid as given.

    The payload is serialised here, not by PyJWT, so ill-typed claims can be sent.
    """
    signing = load_signing_key(config, kid)
    return jwt.PyJWS().encode(
        json.dumps(payload).encode(),
        key if key is not None else signing.private_key,
        algorithm=alg or signing.alg,
        headers={"kid": header_kid if header_kid is not None else signing.kid},
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A JWS compact string with an arbitrary header and signature (``alg: none`` etc.)."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(payload).encode())
    return f"{head}.{body}.{b64(signature)}"


def hs256_with(secret: bytes, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """HS256 computed by hand: PyJWT rightly refuses to use a public key as HMAC secret."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(payload).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def sign_bytes(config: Config, payload: bytes, *, kid: str | None = None) -> str:
    """A correctly signed JWS whose payload is arbitrary bytes (not necessarily a JSON object)."""
    signing = load_signing_key(config, kid)
    return jwt.PyJWS().encode(
        payload, signing.private_key, algorithm=signing.alg, headers={"kid": signing.kid}
    )
