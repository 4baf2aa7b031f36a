"""Authorisation decisions of the catalogue, in one place.

The RPC policy table (``zhida/auth/policy.py``) decides which roles may call
which method; these functions make the finer, data-dependent decisions the
domain owns: a department acts only for its own organisation (its USCC), an
admin (数据管理机构) may act for anyone.

Example::

    from catalog_registry.access import require_owner
    require_owner(principal, resource.provider_code, resource.key)  # PermissionDenied if not
"""

from __future__ import annotations

from collections.abc import Collection

from zhida.auth.principal import Principal, Role
from zhida.errors import PermissionDenied

WRITERS = frozenset({Role.DEPARTMENT, Role.ADMIN})


def is_admin(principal: Principal) -> bool:
    return principal.role is Role.ADMIN


def require_role(principal: Principal, roles: Collection[Role], action: str) -> None:
    if principal.role not in roles:
        allowed = ", ".join(sorted(r.claim for r in roles))
        raise PermissionDenied(
            f"role {principal.role.claim} may not {action} (allowed: {allowed})",
            reason="ROLE_NOT_ALLOWED",
            metadata={"role": principal.role.claim},
        )


def require_admin(principal: Principal, action: str) -> None:
    require_role(principal, (Role.ADMIN,), action)


def require_owner(principal: Principal, provider_code: str, code: str) -> None:
    """Only the provider department itself, or an admin, may change a resource."""
    if is_admin(principal):
        return
    require_role(principal, WRITERS, "change catalogue resources")
    if principal.organisation != provider_code:
        raise PermissionDenied(
            f"resource {code} belongs to {provider_code}, not to {principal.organisation}",
            reason="NOT_RESOURCE_OWNER",
            metadata={"code": code, "provider_code": provider_code},
        )


def may_see_draft(principal: Principal, provider_code: str) -> bool:
    return is_admin(principal) or principal.organisation == provider_code
