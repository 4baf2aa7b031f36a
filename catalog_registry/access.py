"""Authorisation decisions of the catalogue, in one place.

The RPC policy table (``zhida/auth/policy.py``) decides which roles may call
which method; these functions make the finer, data-dependent decisions the
domain owns: a department acts only for its own organisation (its USCC), an
admin (数据管理机构) may act for anyone. On a node, a resource changes only at its
own node (:func:`require_home`): a copy that arrived by catalogue federation is
refused elsewhere, whatever the caller's role.

Example::

    from catalog_registry.access import require_owner
    require_owner(principal, resource.provider_code, resource.key)  # PermissionDenied if not
"""

from __future__ import annotations

from collections.abc import Collection

from catalog_registry.model import Resource
from catalog_registry.repository import CatalogRepository, region_within
from zhida.auth.principal import Principal, Role
from zhida.errors import FailedPrecondition, PermissionDenied

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


def home_region(repo: CatalogRepository, node_region: str | None, resource: Resource) -> str | None:
    """The region of the node a copy belongs to; None when ``resource`` is this node's own.

    A copy is told by where its latest change came from, not by its region: a
    city owns the resources of sub-regions without a node (420106 under 420100).
    """
    if node_region is None or resource.region_code == node_region:
        return None  # imports take only regions strictly above or below the node's
    home = repo.resource_origin(resource.key)
    if home is None and not region_within(resource.region_code, node_region):
        home = resource.region_code  # written here before the region rule
    return home


def require_home(
    repo: CatalogRepository, node_region: str | None, resource: Resource, action: str
) -> None:
    """Refuse ``action`` (e.g. "update it") on a copy: changed here, it would travel one
    way only and the nodes would disagree (``IMPORTED_RESOURCE``, ``home_region``)."""
    home = home_region(repo, node_region, resource)
    if home is not None:
        raise FailedPrecondition(
            f"resource {resource.key} is a copy from region {home}'s node; {action} at that node",
            reason="IMPORTED_RESOURCE",
            metadata={"code": resource.key, "home_region": home},
        )
