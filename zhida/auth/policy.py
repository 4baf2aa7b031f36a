"""Authorisation: which roles may call which RPC, declared in ONE table.

Deny by default: a method that is neither public nor listed in
:data:`RPC_POLICY` is refused for everyone (``METHOD_NOT_DECLARED``), so a new
RPC cannot ship unprotected by accident; a unit test checks every method of
every ``zhida.*.v1`` service has a row. Adding a service means adding its rows
here, nothing else.

Example::

    from zhida.auth.policy import authorize, is_public

    method = "/zhida.node.v1.NodeService/GetNodeInfo"
    if not is_public(method):
        authorize(method, principal)  # PermissionDenied(reason="ROLE_NOT_ALLOWED") for a holder
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from zhida.auth.principal import Principal, Role
from zhida.errors import PermissionDenied, Unauthenticated

ROLE_NOT_ALLOWED = "ROLE_NOT_ALLOWED"
METHOD_NOT_DECLARED = "METHOD_NOT_DECLARED"

ALL_ROLES: frozenset[Role] = frozenset(Role)
OPERATORS: frozenset[Role] = frozenset({Role.ADMIN, Role.AUDITOR, Role.NODE})
DEPT_OR_ADMIN: frozenset[Role] = frozenset({Role.DEPARTMENT, Role.ADMIN})
DEPT_ADMIN_AUDITOR: frozenset[Role] = frozenset({Role.DEPARTMENT, Role.ADMIN, Role.AUDITOR})

# Standard infrastructure services that load balancers, probes and grpcurl call
# without a token. They reveal no domain data.
PUBLIC_METHODS: frozenset[str] = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        # grpcio-health-checking >= 1.66 also serves List (every service's status).
        "/grpc.health.v1.Health/List",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)

# Full gRPC method name -> roles allowed to call it. Keep rows grouped by service.
RPC_POLICY: Mapping[str, frozenset[Role]] = MappingProxyType(
    {
        # zhida.node.v1.NodeService
        "/zhida.node.v1.NodeService/Echo": ALL_ROLES,
        "/zhida.node.v1.NodeService/WhoAmI": ALL_ROLES,
        "/zhida.node.v1.NodeService/GetNodeInfo": OPERATORS,
        # zhida.audit.v1.AuditService (a holder's search is narrowed to itself by the service)
        "/zhida.audit.v1.AuditService/SearchEvents": frozenset({Role.AUDITOR, Role.HOLDER}),
        "/zhida.audit.v1.AuditService/GetCheckpoint": frozenset({Role.AUDITOR, Role.NODE}),
        "/zhida.audit.v1.AuditService/GetInclusionProof": frozenset({Role.AUDITOR, Role.HOLDER}),
        "/zhida.audit.v1.AuditService/GetConsistencyProof": frozenset({Role.AUDITOR, Role.NODE}),
        "/zhida.audit.v1.AuditService/ExportEvents": frozenset({Role.AUDITOR}),
        "/zhida.audit.v1.AuditService/CosignCheckpoint": frozenset({Role.NODE}),
        # zhida.catalog.v1.CatalogService (ownership of resources and demands: the domain)
        "/zhida.catalog.v1.CatalogService/RegisterResource": (
            frozenset({Role.DEPARTMENT, Role.ADMIN})
        ),
        "/zhida.catalog.v1.CatalogService/UpdateResource": frozenset({Role.DEPARTMENT, Role.ADMIN}),
        "/zhida.catalog.v1.CatalogService/PublishResource": (
            frozenset({Role.DEPARTMENT, Role.ADMIN})
        ),
        "/zhida.catalog.v1.CatalogService/RetireResource": frozenset({Role.DEPARTMENT, Role.ADMIN}),
        "/zhida.catalog.v1.CatalogService/GetResource": (
            frozenset({Role.DEPARTMENT, Role.ADMIN, Role.AUDITOR})
        ),
        "/zhida.catalog.v1.CatalogService/ListResourceHistory": (
            frozenset({Role.DEPARTMENT, Role.ADMIN, Role.AUDITOR})
        ),
        "/zhida.catalog.v1.CatalogService/SearchResources": (
            frozenset({Role.DEPARTMENT, Role.ADMIN, Role.AUDITOR})
        ),
        "/zhida.catalog.v1.CatalogService/GetSupplyList": (
            frozenset({Role.DEPARTMENT, Role.ADMIN, Role.AUDITOR})
        ),
        "/zhida.catalog.v1.CatalogService/FileDemand": frozenset({Role.DEPARTMENT, Role.ADMIN}),
        "/zhida.catalog.v1.CatalogService/ListDemands": (
            frozenset({Role.DEPARTMENT, Role.ADMIN, Role.AUDITOR})
        ),
        "/zhida.catalog.v1.CatalogService/GetUnmetDemandReport": (
            frozenset({Role.DEPARTMENT, Role.ADMIN, Role.AUDITOR})
        ),
        "/zhida.catalog.v1.CatalogService/AddNegativeEntry": frozenset({Role.ADMIN}),
        "/zhida.catalog.v1.CatalogService/RemoveNegativeEntry": frozenset({Role.ADMIN}),
        "/zhida.catalog.v1.CatalogService/ListNegativeEntries": (
            frozenset({Role.DEPARTMENT, Role.ADMIN, Role.AUDITOR})
        ),
        "/zhida.catalog.v1.CatalogService/CheckRelease": (
            frozenset({Role.DEPARTMENT, Role.ADMIN, Role.AUDITOR, Role.NODE})
        ),
        "/zhida.catalog.v1.CatalogService/GetCoverageReport": (
            frozenset({Role.DEPARTMENT, Role.ADMIN, Role.AUDITOR})
        ),
        "/zhida.catalog.v1.CatalogService/ExportChanges": frozenset({Role.NODE, Role.ADMIN}),
        "/zhida.catalog.v1.CatalogService/ImportChildChanges": frozenset({Role.NODE, Role.ADMIN}),
        "/zhida.catalog.v1.CatalogService/ImportResources": (
            frozenset({Role.DEPARTMENT, Role.ADMIN})
        ),
        "/zhida.catalog.v1.CatalogService/ExportCatalog": (
            frozenset({Role.DEPARTMENT, Role.ADMIN, Role.AUDITOR})
        ),
        # zhida.licence.v1.LicenceVaultService (the service checks that an issuer changes and
        # reads only its own licences and that a holder sees only its own)
        "/zhida.licence.v1.LicenceVaultService/ListLicenceTypes": ALL_ROLES,
        "/zhida.licence.v1.LicenceVaultService/IssueLicence": frozenset({Role.ISSUER}),
        "/zhida.licence.v1.LicenceVaultService/BatchIssueLicences": frozenset({Role.ISSUER}),
        "/zhida.licence.v1.LicenceVaultService/AmendLicence": frozenset({Role.ISSUER}),
        "/zhida.licence.v1.LicenceVaultService/SuspendLicence": frozenset({Role.ISSUER}),
        "/zhida.licence.v1.LicenceVaultService/ResumeLicence": frozenset({Role.ISSUER}),
        "/zhida.licence.v1.LicenceVaultService/RevokeLicence": frozenset({Role.ISSUER}),
        "/zhida.licence.v1.LicenceVaultService/GetLicence": frozenset(
            {Role.ISSUER, Role.HOLDER, Role.AUDITOR}
        ),
        "/zhida.licence.v1.LicenceVaultService/GetLicenceHistory": (
            frozenset({Role.ISSUER, Role.HOLDER, Role.AUDITOR})
        ),
        "/zhida.licence.v1.LicenceVaultService/GetStatusList": ALL_ROLES,
        "/zhida.licence.v1.LicenceVaultService/GetTrustMaterial": ALL_ROLES,
        "/zhida.licence.v1.LicenceVaultService/GrantConsent": frozenset({Role.HOLDER}),
        "/zhida.licence.v1.LicenceVaultService/WithdrawConsent": frozenset({Role.HOLDER}),
        "/zhida.licence.v1.LicenceVaultService/ListConsents": frozenset({Role.HOLDER}),
        "/zhida.licence.v1.LicenceVaultService/FetchLicences": (
            frozenset({Role.APPLICATION, Role.DEPARTMENT})
        ),
        "/zhida.licence.v1.LicenceVaultService/ListMyLicences": frozenset({Role.HOLDER}),
        "/zhida.licence.v1.LicenceVaultService/ListLicenceUses": frozenset({Role.HOLDER}),
        "/zhida.licence.v1.LicenceVaultService/VerifyLicence": ALL_ROLES,
        # zhida.exchange.v1.ExchangeService (who is requester / provider admin: the domain)
        "/zhida.exchange.v1.ExchangeService/ApplyForData": DEPT_OR_ADMIN,
        "/zhida.exchange.v1.ExchangeService/GetShareRequest": DEPT_ADMIN_AUDITOR,
        "/zhida.exchange.v1.ExchangeService/ListShareRequests": DEPT_OR_ADMIN,
        "/zhida.exchange.v1.ExchangeService/ListPendingShareRequests": frozenset({Role.ADMIN}),
        "/zhida.exchange.v1.ExchangeService/ApproveShareRequest": frozenset({Role.ADMIN}),
        "/zhida.exchange.v1.ExchangeService/RejectShareRequest": frozenset({Role.ADMIN}),
        "/zhida.exchange.v1.ExchangeService/WithdrawShareRequest": DEPT_OR_ADMIN,
        "/zhida.exchange.v1.ExchangeService/ListGrants": DEPT_ADMIN_AUDITOR,
        "/zhida.exchange.v1.ExchangeService/RevokeGrant": frozenset({Role.ADMIN}),
        "/zhida.exchange.v1.ExchangeService/RequestData": DEPT_OR_ADMIN,
        "/zhida.exchange.v1.ExchangeService/StreamDataset": DEPT_OR_ADMIN,
        "/zhida.exchange.v1.ExchangeService/CreateSubscription": DEPT_OR_ADMIN,
        "/zhida.exchange.v1.ExchangeService/ListSubscriptions": DEPT_OR_ADMIN,
        "/zhida.exchange.v1.ExchangeService/CancelSubscription": DEPT_OR_ADMIN,
        "/zhida.exchange.v1.ExchangeService/ReceiveChanges": DEPT_OR_ADMIN,
        "/zhida.exchange.v1.ExchangeService/AcknowledgeChanges": DEPT_OR_ADMIN,
        "/zhida.exchange.v1.ExchangeService/UploadDataset": DEPT_OR_ADMIN,
        "/zhida.exchange.v1.ExchangeService/ListDeliveries": DEPT_ADMIN_AUDITOR,
        # zhida.federation.v1.FederationService: neighbour nodes, over mutual TLS only
        "/zhida.federation.v1.FederationService/Forward": frozenset({Role.NODE}),
        "/zhida.federation.v1.FederationService/ForwardStream": frozenset({Role.NODE}),
        # zhida.federation.v1.LicenceIndexService (a node: over mutual TLS only, checked there)
        "/zhida.federation.v1.LicenceIndexService/PushLicenceIndex": frozenset({Role.NODE}),
        "/zhida.federation.v1.LicenceIndexService/LocateHolder": frozenset({Role.NODE, Role.ADMIN}),
        # zhida.provider.v1.DataProviderService: served by providers; only nodes call it
        "/zhida.provider.v1.DataProviderService/QueryRecords": frozenset({Role.NODE}),
        "/zhida.provider.v1.DataProviderService/StreamRecords": frozenset({Role.NODE}),
        "/zhida.provider.v1.DataProviderService/StreamChanges": frozenset({Role.NODE}),
    }
)

if not PUBLIC_METHODS.isdisjoint(RPC_POLICY):  # a method is public or role-checked, never both
    raise RuntimeError(f"public and role-checked: {sorted(PUBLIC_METHODS & RPC_POLICY.keys())}")


def is_public(method: str) -> bool:
    """True for methods anyone may call without a token (health, reflection)."""
    return method in PUBLIC_METHODS


def authorize(method: str, principal: Principal | None) -> None:
    """Return when ``principal`` may call ``method``; raise otherwise.

    ``method`` is the full name gRPC hands interceptors
    (``/zhida.node.v1.NodeService/Echo``). Raises PermissionDenied with reason
    METHOD_NOT_DECLARED or ROLE_NOT_ALLOWED, or Unauthenticated (TOKEN_MISSING)
    when a non-public method is called without a principal.
    """
    if method in PUBLIC_METHODS:
        return
    roles = RPC_POLICY.get(method)
    if roles is None:
        raise PermissionDenied(
            "method is not declared in the authorisation policy",
            reason=METHOD_NOT_DECLARED,
            metadata={"method": method},
        )
    if principal is None:
        raise Unauthenticated(
            "no bearer token: send 'authorization: Bearer <JWT>'", reason="TOKEN_MISSING"
        )
    if principal.role not in roles:
        raise PermissionDenied(
            f"role {principal.role.claim} may not call {method}",
            reason=ROLE_NOT_ALLOWED,
            metadata={"method": method, "role": principal.role.claim},
        )
