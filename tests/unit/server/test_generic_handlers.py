"""GenericHandlersOnly: every method reachable through generic handlers, none registered."""

from __future__ import annotations

from typing import Any

import grpc

from zhida.server.app import SERVICES, GenericHandlersOnly


class _RecordingServer:
    def __init__(self) -> None:
        self.generic: list[Any] = []
        self.registered: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        self.registered.append(service)


class _AnyServicer:
    def __getattr__(self, name: str) -> Any:
        return lambda request, context: None


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def test_every_method_of_every_service_resolves_through_a_generic_handler() -> None:
    server = _RecordingServer()
    wrapper = GenericHandlersOnly(server)  # type: ignore[arg-type]
    for spec in SERVICES:
        spec.add_to_server(_AnyServicer(), wrapper)
    assert server.registered == []  # grpc.aio would wait on one future per registered method
    for spec in SERVICES:
        for method in spec.descriptor.methods:
            name = f"/{spec.name}/{method.name}"
            found = [h for h in server.generic if h.service(_Details(name)) is not None]
            assert len(found) == 1, name
    assert not any(h.service(_Details("/zhida.nothing.v1.X/Y")) for h in server.generic)
