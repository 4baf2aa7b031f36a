"""Run a forwarded call in-process at the node that serves it (issue 8).

The serving node does not make another network hop to itself: it looks up
the servicer's own handler for the inner method, deserializes the request,
sets the call context a handler expects (:mod:`zhida.server.context`: the
caller's Principal from the verified custody, the shared trace id, the
deadline) and awaits the handler with :class:`LocalContext`, a minimal
``ServicerContext``. The servicer is the same object the node's gRPC server
serves, so everything it does — policy in the domain, audit events, the
thread pool — happens exactly as for a direct call.

:class:`LocalHandlers` collects the handlers by letting each generated
``add_<Service>Servicer_to_server`` register into it, as if it were a server.

Example::

    local = LocalHandlers()
    local.add(exchange_service_pb2_grpc.add_ExchangeServiceServicer_to_server, servicer)
    reply = await local.call(
        "/zhida.exchange.v1.ExchangeService/ApplyForData", request_bytes,
        principal=caller, trace_id="4f1c…", deadline=time.monotonic() + 5)
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any, cast

import grpc
from google.protobuf.message import DecodeError

from zhida.auth.principal import Principal
from zhida.errors import ErrorCode, FailedPrecondition, InvalidArgument, ZhidaError
from zhida.server.context import DEADLINE, PRINCIPAL, TRACE_ID

__all__ = ["LocalAbort", "LocalContext", "LocalHandlers"]

_ERROR_CODES = {c.value: c for c in ErrorCode}


class LocalAbort(ZhidaError):
    """A handler called ``context.abort`` during an in-process call."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details or code.name, reason=str(code.name))
        self.code = _ERROR_CODES.get(code.value[0], ErrorCode.INTERNAL)


class LocalContext:
    """The parts of ``grpc.aio.ServicerContext`` a zhida handler may touch, in-process."""

    def __init__(self, deadline: float | None, peer: str = "in-process") -> None:
        self._deadline = deadline
        self._peer = peer
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self.trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def peer(self) -> str:
        return self._peer

    def auth_context(self) -> Mapping[str, Sequence[bytes]]:
        return {}

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def set_details(self, details: str) -> None:
        self._details = details

    def details(self) -> str:
        return self._details

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self.trailing_metadata = tuple(metadata)

    async def send_initial_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        return None

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> None:
        raise LocalAbort(code, details)

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False


class _Recorder:
    """Stands in for a ``grpc.aio.Server`` while a generated ``add_…_to_server`` runs."""

    def __init__(self, into: dict[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
        self._into = into

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        return None  # the same handlers arrive through add_registered_method_handlers

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        for name, handler in handlers.items():
            self._into[f"/{service}/{name}"] = handler


class LocalHandlers:
    """Full method name → the servicer's handler, for in-process calls."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add(self, add_to_server: Callable[[Any, Any], None], servicer: object) -> None:
        """Register ``servicer``'s methods the way ``add_to_server`` would on a server."""
        add_to_server(servicer, _Recorder(self._handlers))

    def __contains__(self, method: object) -> bool:
        return method in self._handlers

    async def call(
        self,
        method: str,
        request: bytes,
        *,
        principal: Principal,
        trace_id: str,
        deadline: float | None,
    ) -> bytes:
        """Run the unary handler of ``method`` on ``request`` as ``principal``; response bytes.

        ``deadline`` is a ``time.monotonic()`` value. The handler's ZhidaError
        propagates; FAILED_PRECONDITION ``METHOD_NOT_SERVED`` when this node
        does not serve ``method`` as a unary call.
        """
        handler = self._handlers.get(method)
        if handler is None or handler.unary_unary is None:
            raise FailedPrecondition(
                f"this node does not serve {method}",
                reason="METHOD_NOT_SERVED",
                metadata={"method": method},
            )
        message = _decode(handler, method, request)
        serialize = handler.response_serializer
        assert serialize is not None
        tokens = (PRINCIPAL.set(principal), TRACE_ID.set(trace_id), DEADLINE.set(deadline))
        try:
            result = handler.unary_unary(message, cast(Any, LocalContext(deadline)))
            if inspect.isawaitable(result):
                result = await result
        finally:
            DEADLINE.reset(tokens[2])
            TRACE_ID.reset(tokens[1])
            PRINCIPAL.reset(tokens[0])
        data: bytes = serialize(result)
        return data

    async def stream(
        self,
        method: str,
        request: bytes,
        *,
        principal: Principal,
        trace_id: str,
        deadline: float | None,
    ) -> AsyncGenerator[bytes]:
        """Run the server-streaming handler of ``method`` as ``principal``; each response's bytes.

        The handler's messages are taken one at a time, as the consumer asks for
        them (no read-ahead); closing this generator closes the handler's. The
        call context is set in the consuming task for the stream's life
        (the serving node's ``ForwardStream`` task). FAILED_PRECONDITION
        ``METHOD_NOT_SERVED`` when this node does not serve ``method`` as a stream.
        """
        handler = self._handlers.get(method)
        if handler is None or handler.unary_stream is None:
            raise FailedPrecondition(
                f"this node does not serve {method} as a stream",
                reason="METHOD_NOT_SERVED",
                metadata={"method": method},
            )
        message = _decode(handler, method, request)
        serialize = handler.response_serializer
        assert serialize is not None
        PRINCIPAL.set(principal)
        TRACE_ID.set(trace_id)
        DEADLINE.set(deadline)
        responses = handler.unary_stream(message, cast(Any, LocalContext(deadline)))
        if inspect.isasyncgen(responses):
            try:
                async for response in responses:
                    yield serialize(response)
            finally:
                with contextlib.suppress(RuntimeError):  # already closing
                    await responses.aclose()
        else:
            for response in responses:
                yield serialize(response)


def _decode(handler: grpc.RpcMethodHandler[Any, Any], method: str, request: bytes) -> Any:
    deserialize = handler.request_deserializer
    assert deserialize is not None
    try:
        return deserialize(request)
    except DecodeError as exc:
        raise InvalidArgument(
            f"the forwarded request is not a {method} request: {exc}",
            reason="FORWARDED_REQUEST_INVALID",
        ) from None
