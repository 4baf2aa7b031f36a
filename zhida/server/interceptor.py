"""The node's one server interceptor: trace id, authentication, authorisation,
rich errors, metrics and the access log, for every call of every service.

Per call it

1. takes the trace id from the ``x-trace-id`` header (1-64 of ``[A-Za-z0-9-]``)
   or makes one, and sends it back in the ``x-trace-id`` trailer;
2. unless the policy marks the method public, verifies ``authorization: Bearer
   <jwt>`` and authorises the method for the caller's role; a failure ends the
   call with UNAUTHENTICATED / PERMISSION_DENIED and an ErrorInfo reason;
3. exposes trace id and Principal to the handler (:mod:`zhida.server.context`);
4. turns a :class:`~zhida.errors.ZhidaError` raised by the handler into its rich
   status, any other exception into INTERNAL (traceback logged, not sent);
5. records metrics and writes one access-log line (method, code, duration_ms,
   role, org, trace_id; never the token).

The wrapped handler of each method is built once and cached, so the per-call
cost is a metadata scan, one (cached) token verification and the bookkeeping.

Example::

    from zhida.auth.policy import authorize, is_public
    from zhida.server.interceptor import ZhidaInterceptor

    interceptor = ZhidaInterceptor(verifier, authorize=authorize, is_public=is_public)
    server = grpc.aio.server(interceptors=[interceptor])
    # a servicer now just raises: raise NotFound("no such licence", reason="LICENCE_NOT_FOUND")
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc
from grpc.aio import AbortError

from zhida.auth.principal import Principal
from zhida.errors import Unauthenticated, ZhidaError
from zhida.server.context import DEADLINE, PRINCIPAL, TRACE_ID
from zhida.server.logs import fast_sink
from zhida.server.metrics import MethodMetrics, RpcMetrics
from zhida.server.status import status_for_exception

TRACE_HEADER = "x-trace-id"
AUTH_HEADER = "authorization"
_TRACE_ID_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
_BEARER = "bearer "

ACCESS_LOGGER = "zhida.access"
access_log = logging.getLogger(ACCESS_LOGGER)
log = logging.getLogger("zhida.server.interceptor")

Behaviour = Callable[..., Any]  # (request or request iterator, context) -> response(s)


class Verifier(Protocol):
    """What the interceptor needs of :class:`zhida.auth.verifier.TokenVerifier`."""

    def verify(self, token: str | None) -> Principal: ...


def new_trace_id() -> str:
    """A fresh random trace id (16 hex characters); unique, not secret."""
    return f"{random.getrandbits(64):016x}"


def bearer_token(header: str | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` header; None when absent.

    A header with another scheme is returned whole, so the verifier rejects it
    as malformed rather than as missing.
    """
    if header is None:
        return None
    if header[:7].lower() == _BEARER:
        return header[7:].strip()
    return header


class _Method:
    """Per-method constants, computed when the method is first called."""

    __slots__ = ("metrics", "name", "public")

    def __init__(self, name: str, public: bool, metrics: MethodMetrics | None) -> None:
        self.name = name
        self.public = public
        self.metrics = metrics


class ZhidaInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps every method handler of the server; see the module docstring."""

    def __init__(
        self,
        verifier: Verifier,
        *,
        authorize: Callable[[str, Principal], None],
        is_public: Callable[[str], bool],
        metrics: RpcMetrics | None = None,
        on_denied: Callable[[str, str], Awaitable[None]] | None = None,
        node_auth: Callable[[grpc.aio.ServicerContext[Any, Any]], Principal | None] | None = None,
        route: Callable[[str, grpc.RpcMethodHandler[Any, Any]], Behaviour | None] | None = None,
    ) -> None:
        self._verifier = verifier
        # Federation (issue 8). ``node_auth``: the caller of a call that came over the
        # mutual-TLS port, from its client certificate (None: not over TLS, so a bearer
        # token is needed). ``route``: may replace a unary or server-streaming method's
        # behaviour (forwarding to another node; for a stream it returns an async generator
        # function); it runs after authentication and authorisation.
        self._node_auth = node_auth
        self._route = route
        # Called (method, reason) when a call is refused for its credential or role,
        # before the client sees the refusal: the node records it in the audit log.
        self._on_denied = on_denied
        self._authorize = authorize
        self._is_public = is_public
        self._metrics = metrics
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        name = handler_call_details.method
        wrapped = self._handlers.get(name)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:  # unknown method: gRPC answers UNIMPLEMENTED
                return handler
            wrapped = self._handlers[name] = self.wrap(name, handler)
        return wrapped

    def wrap(
        self, name: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """The handler for ``name`` with the per-call behaviour around it."""
        metrics = self._metrics.for_method(name) if self._metrics is not None else None
        method = _Method(name, self._is_public(name), metrics)
        deser, ser = handler.request_deserializer, handler.response_serializer
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_behaviour(method, handler.stream_stream), deser, ser
            )
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_behaviour(method, handler.stream_unary), deser, ser
            )
        if handler.response_streaming:
            stream = handler.unary_stream
            if self._route is not None and stream is not None:  # once per method, not per call
                stream = self._route(name, handler) or stream
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_behaviour(method, stream), deser, ser
            )
        unary = handler.unary_unary
        if self._route is not None and unary is not None:
            unary = self._route(name, handler) or unary
        return grpc.unary_unary_rpc_method_handler(self._wrap_behaviour(method, unary), deser, ser)

    # --- per call ---------------------------------------------------------------

    def _begin(
        self, method: _Method, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[str, str | None, tuple[tuple[str, str]], float]:
        """Trace id in, its trailer set, the clock started; the authorization header."""
        trace_id: str | bytes | None = None
        auth: str | None = None
        for key, value in context.invocation_metadata() or ():
            if key == TRACE_HEADER:
                trace_id = value
            elif key == AUTH_HEADER and isinstance(value, str):
                auth = value
        if not isinstance(trace_id, str) or not _TRACE_ID_RE.fullmatch(trace_id):
            trace_id = new_trace_id()
        TRACE_ID.set(trace_id)  # the call's own task context: no reset needed
        remaining = context.time_remaining()
        if remaining is not None:
            DEADLINE.set(time.monotonic() + remaining)
        trailer = ((TRACE_HEADER, trace_id),)
        context.set_trailing_metadata(trailer)
        if method.metrics is not None:
            method.metrics.started()
        return trace_id, auth, trailer, time.perf_counter()

    def _authenticate(
        self, method: _Method, header: str | None, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Principal | None:
        """The verified, authorised caller (None for a public method); raises ZhidaError."""
        if method.public:
            return None
        principal = self._node_auth(context) if self._node_auth is not None else None
        if principal is None:
            principal = self._verifier.verify(bearer_token(header))
        if principal is None:  # a verifier must raise; never let None through
            raise Unauthenticated("token not accepted", reason="TOKEN_INVALID")
        PRINCIPAL.set(principal)  # before authorising: a refusal is recorded with its caller
        self._authorize(method.name, principal)
        return principal

    async def _denied(self, method: _Method, denial: ZhidaError) -> None:
        if self._on_denied is None:
            return
        try:
            await self._on_denied(method.name, denial.reason)
        except Exception:
            # The refusal stands even if it cannot be recorded; the operator must know.
            log.exception("could not record the refusal of %s in the audit log", method.name)

    def _end(
        self,
        method: _Method,
        code: str,
        started: float,
        trace_id: str,
        principal: Principal | None,
    ) -> None:
        elapsed = time.perf_counter() - started
        if method.metrics is not None:
            method.metrics.finished(code, elapsed)
        if access_log.isEnabledFor(logging.INFO):
            fields = {
                "method": method.name,
                "code": code,
                "duration_ms": round(elapsed * 1000.0, 3),
                "role": principal.role.claim if principal is not None else "",
                "org": principal.organisation if principal is not None else "",
            }
            sink = fast_sink(access_log)
            if sink is not None:  # no LogRecord: the same line at a fraction of the cost
                sink.emit_fields(ACCESS_LOGGER, "rpc", trace_id, fields)
            else:
                fields["trace_id"] = trace_id
                access_log.handle(
                    access_log.makeRecord(
                        ACCESS_LOGGER, logging.INFO, __file__, 0, "rpc", (), None, extra=fields
                    )
                )

    def _wrap_behaviour(self, method: _Method, inner: Behaviour | None) -> Behaviour:
        assert inner is not None
        if inspect.isasyncgenfunction(inner) or inspect.isgeneratorfunction(inner):
            return self._streaming_behaviour(method, inner)
        return self._call_behaviour(method, inner)

    def _call_behaviour(self, method: _Method, inner: Behaviour) -> Behaviour:
        """Wraps a coroutine behaviour (unary response, or streams via context.write)."""
        always_awaitable = inspect.iscoroutinefunction(inner)  # decided once, not per call

        async def behaviour(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            trace_id, auth, trailer, started = self._begin(method, context)
            principal: Principal | None = None
            code = "OK"
            ended = False
            try:
                try:
                    principal = self._authenticate(method, auth, context)
                except ZhidaError as denial:
                    await self._denied(method, denial)
                    raise
                result = inner(request, context)
                if always_awaitable or inspect.isawaitable(result):
                    result = await result
                set_code = context.code()
                if set_code is not None and set_code is not grpc.StatusCode.OK:
                    code = str(set_code.name)
                return result
            except AbortError:
                code = _aborted_code(context)
                raise
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except Exception as error:
                status = status_for_exception(error, method.name, trace_id)
                code = str(status.code.name)
                ended = True  # before the client can see the status
                self._end(method, code, started, trace_id, principal)
                await context.abort(
                    status.code, status.details, (*status.trailing_metadata, *trailer)
                )
            finally:
                if not ended:
                    self._end(method, code, started, trace_id, principal)

        return behaviour

    def _streaming_behaviour(self, method: _Method, inner: Behaviour) -> Behaviour:
        """Wraps an async (or plain) generator behaviour that yields responses."""

        async def behaviour(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            trace_id, auth, trailer, started = self._begin(method, context)
            principal: Principal | None = None
            code = "OK"
            ended = False
            try:
                try:
                    principal = self._authenticate(method, auth, context)
                except ZhidaError as denial:
                    await self._denied(method, denial)
                    raise
                responses = inner(request, context)
                if inspect.isasyncgen(responses):
                    async for response in responses:
                        yield response
                else:
                    for response in responses:
                        yield response
            except AbortError:
                code = _aborted_code(context)
                raise
            except (asyncio.CancelledError, GeneratorExit):
                code = "CANCELLED"
                raise
            except Exception as error:
                status = status_for_exception(error, method.name, trace_id)
                code = str(status.code.name)
                ended = True  # before the client can see the status
                self._end(method, code, started, trace_id, principal)
                await context.abort(
                    status.code, status.details, (*status.trailing_metadata, *trailer)
                )
            finally:
                if not ended:
                    self._end(method, code, started, trace_id, principal)

        return behaviour


def _aborted_code(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    code = context.code()
    return str(code.name) if code is not None else "UNKNOWN"
