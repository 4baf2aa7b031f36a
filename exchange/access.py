"""Authorisation decisions of the exchange that depend on the data (the RPC table decides roles).

Only an ADMIN of the provider organisation decides requests and revokes
grants; only the requester organisation withdraws its own request.

Example::

    from exchange.access import require_provider_admin
    require_provider_admin(principal, resource.provider_code, "decide request r-1")
"""

from __future__ import annotations

from zhida.auth.principal import Principal, Role
from zhida.errors import PermissionDenied

APPLICANT_ROLES = frozenset({Role.DEPARTMENT, Role.ADMIN})


def require_provider_admin(principal: Principal, provider_org: str, action: str) -> None:
    """PermissionDenied (``NOT_PROVIDER_ADMIN``) unless an ADMIN of ``provider_org``."""
    if principal.role is not Role.ADMIN or principal.organisation != provider_org:
        raise PermissionDenied(
            f"only an admin of the provider {provider_org} may {action}",
            reason="NOT_PROVIDER_ADMIN",
            metadata={"provider_org": provider_org, "role": principal.role.claim},
        )


def require_applicant(principal: Principal) -> None:
    """PermissionDenied (``ROLE_NOT_ALLOWED``) unless a department or an admin."""
    if principal.role not in APPLICANT_ROLES:
        raise PermissionDenied(
            f"role {principal.role.claim} may not apply for data (allowed: admin, department)",
            reason="ROLE_NOT_ALLOWED",
            metadata={"role": principal.role.claim},
        )


def require_requester(principal: Principal, requester_org: str, request_id: str) -> None:
    """PermissionDenied (``NOT_REQUESTER``) unless the principal belongs to ``requester_org``."""
    if principal.organisation != requester_org or principal.role not in APPLICANT_ROLES:
        raise PermissionDenied(
            f"request {request_id} belongs to {requester_org}",
            reason="NOT_REQUESTER",
            metadata={"request_id": request_id},
        )
