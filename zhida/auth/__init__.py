"""Authentication (bearer JWTs checked against a JWKS) and authorisation (one policy table)."""

from zhida.auth.keys import ensure_dev_keys, rotate_dev_key
from zhida.auth.mint import DEMO_ORGS, mint_token
from zhida.auth.policy import PUBLIC_METHODS, RPC_POLICY, authorize, is_public
from zhida.auth.principal import Principal, Role
from zhida.auth.verifier import TokenVerifier

__all__ = [
    "DEMO_ORGS",
    "PUBLIC_METHODS",
    "RPC_POLICY",
    "Principal",
    "Role",
    "TokenVerifier",
    "authorize",
    "ensure_dev_keys",
    "is_public",
    "mint_token",
    "rotate_dev_key",
]
