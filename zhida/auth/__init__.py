"""Authentication (bearer JWTs checked against a JWKS) and authorisation (one policy table)."""

from zhida.auth.principal import Principal, Role

__all__ = ["Principal", "Role"]
