"""The interceptor around every handler kind, on an in-process aio server with a fake verifier."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from zhida.auth.principal import Principal, Role
from zhida.client import ErrorDetails, error_details
from zhida.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from zhida.server.context import (
    current_principal,
    current_trace_id,
    optional_principal,
    time_remaining,
)
from zhida.server.interceptor import ZhidaInterceptor, bearer_token
from zhida.server.metrics import RpcMetrics
from zhida.server.runtime import run_in_pool

SERVICE = "test.Svc"
ADMIN = Principal("root", Role.ADMIN, "11420100000000000X", "420100", 2_000_000_000)
HOLDER = Principal("citizen", Role.HOLDER, "11420100000000000X", "420100", 2_000_000_000)


class FakeVerifier:
    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def verify(self, token: str | None) -> Principal:
        self.seen.append(token)
        if token == "admin":
            return ADMIN
        if token == "holder":
            return HOLDER
        raise Unauthenticated("bad token", reason="TOKEN_MISSING" if not token else "TOKEN_BAD")


def authorize(method: str, principal: Principal) -> None:
    if method.endswith("/AdminOnly") and principal.role is not Role.ADMIN:
        raise PermissionDenied("admins only", reason="ROLE_NOT_ALLOWED")


def is_public(method: str) -> bool:
    return method.endswith("/Public")


# --- the test service (bytes in, bytes out) ---------------------------------------------


async def ok(request: bytes, context: Any) -> bytes:
    return b"ok:" + request


async def whoami(request: bytes, context: Any) -> bytes:
    return f"{current_principal().subject}|{current_trace_id()}".encode()


async def public(request: bytes, context: Any) -> bytes:
    return b"anonymous" if optional_principal() is None else b"someone"


async def not_found(request: bytes, context: Any) -> bytes:
    raise NotFound("no such thing", reason="THING_NOT_FOUND", metadata={"id": "7"})


async def boom(request: bytes, context: Any) -> bytes:
    raise RuntimeError("secret internals")


async def aborts(request: bytes, context: Any) -> bytes:
    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "handler aborted")
    raise AssertionError("unreachable")


def sync_handler(request: bytes, context: Any) -> bytes:
    return b"sync"


async def gen(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for i in range(3):
        yield b"%d" % i
    raise InvalidArgument("stop", violations=[FieldViolation("n", "too many")])


async def writer(request: bytes, context: Any) -> None:
    for part in (b"a", b"b"):
        await context.write(part)


async def total(requests: AsyncIterator[bytes], context: Any) -> bytes:
    return b"".join([r async for r in requests])


async def bidi(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request.upper()


# A one-thread pool: "Block" occupies it, so "Queued" waits behind it.
POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-pool")
DONE: list[bytes] = []


async def block(request: bytes, context: Any) -> bytes:
    await run_in_pool(POOL, time.sleep, 0.6)
    return b"blocked"


async def queued(request: bytes, context: Any) -> bytes:
    await run_in_pool(POOL, DONE.append, request)
    return b"done"


async def remaining(request: bytes, context: Any) -> bytes:
    left = time_remaining()
    return b"none" if left is None else b"%.1f" % left


HANDLERS = {
    "Block": grpc.unary_unary_rpc_method_handler(block),
    "Queued": grpc.unary_unary_rpc_method_handler(queued),
    "Remaining": grpc.unary_unary_rpc_method_handler(remaining),
    "Ok": grpc.unary_unary_rpc_method_handler(ok),
    "AdminOnly": grpc.unary_unary_rpc_method_handler(ok),
    "WhoAmI": grpc.unary_unary_rpc_method_handler(whoami),
    "Public": grpc.unary_unary_rpc_method_handler(public),
    "NotFound": grpc.unary_unary_rpc_method_handler(not_found),
    "Boom": grpc.unary_unary_rpc_method_handler(boom),
    "Aborts": grpc.unary_unary_rpc_method_handler(aborts),
    "Sync": grpc.unary_unary_rpc_method_handler(sync_handler),
    "Gen": grpc.unary_stream_rpc_method_handler(gen),
    "Writer": grpc.unary_stream_rpc_method_handler(writer),
    "Total": grpc.stream_unary_rpc_method_handler(total),
    "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
}


class Harness:
    """An aio server with the interceptor, on its own loop thread."""

    def __init__(self) -> None:
        self.verifier = FakeVerifier()
        self.metrics = RpcMetrics()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")

    async def _start(self) -> int:
        interceptor = ZhidaInterceptor(
            self.verifier, authorize=authorize, is_public=is_public, metrics=self.metrics
        )
        self.server = grpc.aio.server(interceptors=[interceptor])
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, HANDLERS),)
        )
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return port

    def close(self) -> None:
        self.channel.close()
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def unary(self, name: str, token: str | None = "admin", **kw: Any) -> Any:  # noqa: S107
        return _rpc(self.channel, "unary_unary", name)(
            kw.pop("request", b"x"), metadata=_md(token, kw.pop("trace_id", None)),
            timeout=5, **kw,
        )  # fmt: skip

    def count(self, name: str, code: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "zhida_rpc_calls_total", {"method": f"/{SERVICE}/{name}", "code": code}
        )
        return value or 0.0


def _rpc(channel: grpc.Channel, kind: str, name: str) -> Any:
    """A multi-callable for ``/test.Svc/<name>`` with bytes in and out."""
    return getattr(channel, kind)(
        f"/{SERVICE}/{name}", request_serializer=None, response_deserializer=None
    )


def _trailers(call: Any) -> dict[str, Any]:
    return {key: value for key, value in call.trailing_metadata()}


def _md(token: str | None, trace_id: str | None = None) -> tuple[tuple[str, str], ...]:
    md: list[tuple[str, str]] = []
    if token is not None:
        md.append(("authorization", f"Bearer {token}"))
    if trace_id is not None:
        md.append(("x-trace-id", trace_id))
    return tuple(md)


def _details(error: grpc.RpcError) -> ErrorDetails:
    details = error_details(error)
    assert details.domain == "zhida", f"no rich status on {error}"
    return details


def _fails(call: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    try:
        result = call(*args, **kwargs)
        if hasattr(result, "__iter__") and not isinstance(result, bytes):
            list(result)
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call succeeded")


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    try:
        yield h
    finally:
        h.close()


def test_bearer_token_parsing() -> None:
    assert bearer_token(None) is None
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") == "Basic abc"  # the verifier calls it malformed


def test_authenticated_call_sees_principal_and_trace_id(harness: Harness) -> None:
    reply = harness.unary("WhoAmI", trace_id="trace-1")
    assert reply == b"root|trace-1"


def test_trace_id_comes_back_in_trailers_even_on_errors(harness: Harness) -> None:
    _, call = _rpc(harness.channel, "unary_unary", "Ok").with_call(
        b"x", metadata=_md("admin", "t-ok"), timeout=5
    )
    assert _trailers(call)["x-trace-id"] == "t-ok"
    error = _fails(harness.unary, "NotFound", trace_id="t-err")
    assert _trailers(error)["x-trace-id"] == "t-err"


@pytest.mark.parametrize(("token", "reason"), [(None, "TOKEN_MISSING"), ("garbage", "TOKEN_BAD")])
def test_bad_tokens_are_unauthenticated(harness: Harness, token: str | None, reason: str) -> None:
    before = harness.count("Ok", "UNAUTHENTICATED")
    error = _fails(harness.unary, "Ok", token=token)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert _details(error).reason == reason
    assert harness.count("Ok", "UNAUTHENTICATED") == before + 1


def test_policy_denial_is_permission_denied(harness: Harness) -> None:
    error = _fails(harness.unary, "AdminOnly", token="holder")
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert _details(error).reason == "ROLE_NOT_ALLOWED"
    assert harness.unary("AdminOnly", token="admin") == b"ok:x"


def test_public_methods_skip_the_verifier(harness: Harness) -> None:
    harness.verifier.seen.clear()
    assert harness.unary("Public", token=None) == b"anonymous"
    assert harness.unary("Public", token="garbage") == b"anonymous"
    assert harness.verifier.seen == []


def test_zhida_error_from_a_servicer_becomes_its_rich_status(harness: Harness) -> None:
    error = _fails(harness.unary, "NotFound")
    assert error.code() is grpc.StatusCode.NOT_FOUND
    details = _details(error)
    assert (details.reason, details.metadata) == ("THING_NOT_FOUND", {"id": "7"})
    assert harness.count("NotFound", "NOT_FOUND") >= 1


def test_unexpected_exception_is_internal_without_details(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        error = _fails(harness.unary, "Boom", trace_id="t-boom")
    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details() == "internal error (trace t-boom)"
    assert "secret" not in str(error.trailing_metadata())
    assert _details(error).reason == "INTERNAL"
    assert "secret internals" in caplog.text  # logged server-side, with the traceback
    assert any(r.exc_info for r in caplog.records)


def test_handler_abort_is_passed_through(harness: Harness) -> None:
    error = _fails(harness.unary, "Aborts")
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "handler aborted"
    # The handler sent its status itself; the bookkeeping follows a moment later.
    deadline = time.monotonic() + 5
    while harness.count("Aborts", "FAILED_PRECONDITION") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_plain_function_handlers_work(harness: Harness) -> None:
    assert harness.unary("Sync") == b"sync"


def test_unary_stream_generator_then_error(harness: Harness) -> None:
    call = _rpc(harness.channel, "unary_stream", "Gen")(b"", metadata=_md("admin"), timeout=5)
    received: list[bytes] = []
    with pytest.raises(grpc.RpcError):
        received.extend(call)
    assert received == [b"0", b"1", b"2"]
    assert call.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert _details(call).violations == (FieldViolation("n", "too many"),)


def test_unary_stream_writer(harness: Harness) -> None:
    call = _rpc(harness.channel, "unary_stream", "Writer")(b"", metadata=_md("admin"))
    assert list(call) == [b"a", b"b"]


def test_stream_unary_and_stream_stream(harness: Harness) -> None:
    total_call = _rpc(harness.channel, "stream_unary", "Total")
    assert total_call(iter([b"a", b"b", b"c"]), metadata=_md("admin"), timeout=5) == b"abc"
    bidi_call = _rpc(harness.channel, "stream_stream", "Bidi")
    assert list(bidi_call(iter([b"x", b"y"]), metadata=_md("admin"), timeout=5)) == [b"X", b"Y"]
    error = _fails(bidi_call, iter([b"x"]), metadata=_md(None), timeout=5)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED


def test_access_log_line_per_call_without_the_token(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="zhida.access"):
        harness.unary("Ok", trace_id="t-log")
    (line,) = [r for r in caplog.records if r.name == "zhida.access"]
    fields = line.__dict__
    assert fields["method"] == f"/{SERVICE}/Ok"
    assert (fields["code"], fields["role"], fields["trace_id"]) == ("OK", "admin", "t-log")
    assert fields["org"] == ADMIN.organisation
    assert fields["duration_ms"] >= 0
    assert "admin" not in line.getMessage()  # the token ("admin") is never in the message


def test_metrics_latency_and_in_flight(harness: Harness) -> None:
    registry = harness.metrics.registry
    method = {"method": f"/{SERVICE}/Ok"}
    before = registry.get_sample_value("zhida_rpc_duration_seconds_count", method) or 0.0
    harness.unary("Ok")
    assert registry.get_sample_value("zhida_rpc_duration_seconds_count", method) == before + 1
    assert registry.get_sample_value("zhida_rpc_in_flight", method) == 0


def test_the_handler_sees_the_client_deadline(harness: Harness) -> None:
    left = float(harness.unary("Remaining"))  # the harness's calls carry timeout=5
    assert 3.0 < left <= 5.0
    no_deadline = _rpc(harness.channel, "unary_unary", "Remaining")(b"x", metadata=_md("admin"))
    assert no_deadline == b"none"


def test_work_queued_past_the_deadline_is_never_done(harness: Harness) -> None:
    DONE.clear()
    blocker = _rpc(harness.channel, "unary_unary", "Block").future(
        b"x", metadata=_md("admin"), timeout=5
    )
    time.sleep(0.1)  # let Block take the pool's only thread
    with pytest.raises(grpc.RpcError) as info:
        _rpc(harness.channel, "unary_unary", "Queued")(b"late", metadata=_md("admin"), timeout=0.2)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert blocker.result(5) == b"blocked"
    # The queued job reached the thread after its deadline: it must not have run.
    POOL.submit(lambda: None).result(5)
    assert DONE == []
    # Within its deadline the same call does the work.
    assert harness.unary("Queued", request=b"on-time") == b"done"
    assert DONE == [b"on-time"]
