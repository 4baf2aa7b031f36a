"""The interceptor's ``route`` hook reaches server-streaming methods too (issue 8 item 5)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc

from zhida.auth.principal import Principal, Role
from zhida.server.interceptor import ZhidaInterceptor

CLERK = Principal("clerk-7", Role.DEPARTMENT, "11420102MB1A23456R", "420102", 2_000_000_000)
STREAM = "/zhida.exchange.v1.ExchangeService/StreamDataset"


class Verifier:
    def verify(self, token: str | None) -> Principal:
        return CLERK


class Context:
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Bearer t"),)

    def time_remaining(self) -> float | None:
        return None

    def set_trailing_metadata(self, metadata: Any) -> None:
        return None

    def code(self) -> grpc.StatusCode | None:
        return None


async def local(request: Any, context: Any) -> AsyncIterator[str]:
    yield "local"


def test_a_stream_handler_is_offered_to_the_route_hook_once() -> None:
    offered: list[str] = []

    def route(name: str, handler: grpc.RpcMethodHandler[Any, Any]) -> Any:
        offered.append(name)
        if name != STREAM:
            return None

        async def forwarded(request: Any, context: Any) -> AsyncIterator[str]:
            assert handler.unary_stream is cast(Any, local)
            yield "forwarded"
            yield "again"

        return forwarded

    interceptor = ZhidaInterceptor(
        Verifier(), authorize=lambda method, who: None, is_public=lambda m: False, route=route
    )
    handler = grpc.unary_stream_rpc_method_handler(local)
    wrapped = interceptor.wrap(STREAM, handler)
    other = interceptor.wrap("/zhida.exchange.v1.ExchangeService/ReceiveChanges", handler)

    async def drain(h: grpc.RpcMethodHandler[Any, Any]) -> list[str]:
        behaviour: Any = h.unary_stream
        return [m async for m in behaviour(object(), Context())]

    assert asyncio.run(drain(wrapped)) == ["forwarded", "again"]
    assert asyncio.run(drain(other)) == ["local"]  # the hook declined: the servicer's own
    assert offered == [STREAM, "/zhida.exchange.v1.ExchangeService/ReceiveChanges"]
