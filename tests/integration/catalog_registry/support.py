"""Shared helpers of the catalogue's gRPC tests: stubs, tokens per sample department, errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from catalog_registry.sample_data import DEPARTMENTS
from tests.fixtures.node import NodeHandle
from zhida.auth.principal import Role
from zhida.catalog.v1 import catalog_service_pb2_grpc as pb_grpc
from zhida.client import ErrorDetails, error_details

Metadata = tuple[tuple[str, str], ...]
ADMIN_ORG = DEPARTMENTS["hb-data"].uscc


class Caller:
    """Call metadata for the sample's departments and for other roles, on one node."""

    def __init__(self, node: NodeHandle) -> None:
        self.node = node
        self._cache: dict[tuple[str, str], Metadata] = {}

    def _md(self, role: Role, org: str, region: str, subject: str) -> Metadata:
        key = (role.claim, org)
        if key not in self._cache:
            self._cache[key] = self.node.auth(role=role, org=org, region=region, subject=subject)
        return self._cache[key]

    def dept(self, key: str) -> Metadata:
        d = DEPARTMENTS[key]
        return self._md(Role.DEPARTMENT, d.uscc, d.region_code, f"clerk@{key}")

    def by_uscc(self, uscc: str | None) -> Metadata:
        if uscc is None:
            return self.admin
        d = next(d for d in DEPARTMENTS.values() if d.uscc == uscc)
        return self.dept(d.key)

    @property
    def admin(self) -> Metadata:
        return self._md(Role.ADMIN, ADMIN_ORG, "420000", "admin@hb-data")

    def role(self, role: Role) -> Metadata:
        return self._md(role, ADMIN_ORG, "420000", f"{role.claim}@hb-data")


def stub(node: NodeHandle) -> pb_grpc.CatalogServiceStub:
    return pb_grpc.CatalogServiceStub(node.channel())


def failure(call: Callable[..., Any], *args: Any, **kwargs: Any) -> ErrorDetails:
    """Invoke ``call`` expecting a zhida error; return its decoded rich status."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as error:
        details = error_details(error)
    else:
        raise AssertionError(f"{call} succeeded; an error was expected")
    assert details.domain == "zhida", f"no rich status: {details}"
    return details


def fields(details: ErrorDetails) -> list[str]:
    return [v.field for v in details.violations]
