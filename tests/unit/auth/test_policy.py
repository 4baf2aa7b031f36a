"""The RPC policy table: deny by default, roles per method, and complete for every v1 service."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

import zhida
from zhida.auth.policy import PUBLIC_METHODS, RPC_POLICY, authorize, is_public
from zhida.auth.principal import Principal, Role
from zhida.errors import ErrorCode, PermissionDenied, Unauthenticated

ECHO = "/zhida.node.v1.NodeService/Echo"
WHOAMI = "/zhida.node.v1.NodeService/WhoAmI"
NODE_INFO = "/zhida.node.v1.NodeService/GetNodeInfo"


def _as(role: Role) -> Principal:
    return Principal("s", role, "111000000000170137", "100000", 2_000_000_000)


def _v1_pb2_modules() -> list[ModuleType]:
    """Every generated ``zhida/**/v1/*_pb2.py`` module, found on disk, imported."""
    root = Path(zhida.__file__).parent
    names = [
        ".".join(("zhida", *p.relative_to(root).with_suffix("").parts))
        for p in sorted(root.glob("**/v1/*_pb2.py"))
    ]
    return [importlib.import_module(n) for n in names]


def _declared_methods() -> set[str]:
    return {
        f"/{service.full_name}/{method.name}"
        for module in _v1_pb2_modules()
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }


def test_every_v1_method_has_a_policy_row() -> None:
    methods = _declared_methods()
    assert ECHO in methods  # the walk found the generated code at all
    missing = sorted(methods - RPC_POLICY.keys())
    assert not missing, f"add these to zhida.auth.policy.RPC_POLICY: {missing}"


def test_no_policy_row_for_a_method_that_does_not_exist() -> None:
    stale = sorted(RPC_POLICY.keys() - _declared_methods())
    assert not stale, f"RPC_POLICY rows for unknown methods: {stale}"


def test_every_row_allows_someone() -> None:
    assert all(roles and roles <= frozenset(Role) for roles in RPC_POLICY.values())


def test_public_methods_are_the_standard_health_and_reflection_rpcs() -> None:
    from grpc_health.v1 import health_pb2
    from grpc_reflection.v1alpha import reflection_pb2

    known = {
        f"/{s.full_name}/{m.name}"
        for module in (health_pb2, reflection_pb2)
        for s in module.DESCRIPTOR.services_by_name.values()
        for m in s.methods
    }
    # grpcio-reflection serves v1 under the same message types; not every version ships it.
    known.add("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
    assert PUBLIC_METHODS.issubset(known)
    assert "/grpc.health.v1.Health/Check" in PUBLIC_METHODS
    assert "/grpc.health.v1.Health/Watch" in PUBLIC_METHODS
    assert not PUBLIC_METHODS & RPC_POLICY.keys()


@pytest.mark.parametrize("method", sorted(PUBLIC_METHODS))
def test_public_methods_need_no_principal(method: str) -> None:
    assert is_public(method)
    authorize(method, None)


@pytest.mark.parametrize("role", list(Role))
def test_echo_and_whoami_allow_every_role(role: Role) -> None:
    authorize(ECHO, _as(role))
    authorize(WHOAMI, _as(role))
    assert not is_public(ECHO)


@pytest.mark.parametrize("role", list(Role))
def test_get_node_info_for_operators_only(role: Role) -> None:
    if role in {Role.ADMIN, Role.AUDITOR, Role.NODE}:
        authorize(NODE_INFO, _as(role))
        return
    with pytest.raises(PermissionDenied) as info:
        authorize(NODE_INFO, _as(role))
    assert info.value.reason == "ROLE_NOT_ALLOWED"
    assert info.value.code is ErrorCode.PERMISSION_DENIED
    assert info.value.metadata["role"] == role.claim


@pytest.mark.parametrize(
    "method",
    [
        "/zhida.node.v1.NodeService/Shutdown",
        "/zhida.exchange.v1.ExchangeService/Send",
        "/grpc.health.v1.Health/Set",
        "",
        "/zhida.node.v1.NodeService/echo",
        "zhida.node.v1.NodeService/Echo",
    ],
)
def test_undeclared_methods_denied_for_everyone(method: str) -> None:
    assert not is_public(method)
    for principal in (_as(Role.ADMIN), None):
        with pytest.raises(PermissionDenied) as info:
            authorize(method, principal)
        assert info.value.reason == "METHOD_NOT_DECLARED"


def test_declared_method_without_principal_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated) as info:
        authorize(ECHO, None)
    assert info.value.reason == "TOKEN_MISSING"


def test_policy_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        RPC_POLICY[ECHO] = frozenset()  # type: ignore[index]
