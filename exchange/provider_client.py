"""The node's client of a department's ``zhida.provider.v1.DataProviderService``: RemoteProvider.

Every call carries the :class:`DeliveryContext` (requester, grant, items,
purpose, trace id), the node's bearer token (role ``node``) and the call's
``x-trace-id``. The node's own deadline bounds each call: a provider gets
at most the caller's remaining time and at most
``[exchange] provider_timeout_seconds`` per answer (per message in a stream).

Provider answers are parsed straight into the exchange's response messages
(wire-compatible: see :mod:`exchange.provider`) and their unknown fields
dropped; bytes that are not such a message become ``INTERNAL``
``MALFORMED_RECORD`` — nothing of them is passed on, nor quoted. Failures
map to the caller's view:

* provider unreachable or answering ``UNAVAILABLE`` → ``UNAVAILABLE``
  ``PROVIDER_UNAVAILABLE`` (retry later);
* too slow → ``DEADLINE_EXCEEDED`` ``PROVIDER_TIMEOUT``;
* ``NOT_FOUND`` → ``NOT_FOUND`` ``DATASET_NOT_FOUND``; ``INVALID_ARGUMENT`` (a
  bad filter or cursor) → ``INVALID_ARGUMENT`` ``PROVIDER_REJECTED``;
* anything else (the provider refusing the node's token included) →
  ``INTERNAL`` ``PROVIDER_ERROR``.

Example::

    remote = RemoteProvider("samr-registry", "10.0.0.7:50071", NodeToken(config), timeout=10.0)
    page = await remote.query(Query("1-02-001-0000-000008", "91420100…", {}, 10, "", dctx))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from exchange.minimise import MalformedRecord
from exchange.provider import Query
from zhida.auth.mint import DEMO_ORGS, mint_token
from zhida.auth.principal import Role
from zhida.config import Config
from zhida.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    ZhidaError,
)
from zhida.exchange.v1 import exchange_service_pb2 as pb
from zhida.provider.v1 import data_provider_service_pb2 as ppb
from zhida.server.context import current_trace_id, time_remaining

M = TypeVar("M", bound=Message)
SERVICE = "/zhida.provider.v1.DataProviderService/"
DEV_TOKEN_TTL = 3600
_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # end of a stream, for call.read()
# The organisation named in a development node token (a synthetic USCC).
DEV_NODE_ORG = DEMO_ORGS["武汉市武昌区政务服务和大数据管理局"]


class NodeToken:
    """The bearer token the node shows providers: a file, or a development token it mints.

    ``[exchange] provider_token_file`` names a file holding a token issued for
    the node (role ``node``); it is re-read when it changes. Without one, and
    with ``auth.dev_keys`` on, the node mints its own token with the
    deployment's development key, renewed well before it expires.
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        self._file: Path | None = config.exchange.provider_token_file
        self._token = ""
        self._renew_at = 0.0
        self._stamp: tuple[int, int] | None = None

    def __call__(self) -> str:
        if self._file is not None:
            try:
                stat = self._file.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
                if stamp != self._stamp:
                    self._token = self._file.read_text(encoding="utf-8").strip()
                    self._stamp = stamp
            except OSError as exc:
                raise Unavailable(
                    f"cannot read the node's provider token: {exc.strerror}",
                    reason="NODE_TOKEN_UNAVAILABLE",
                ) from None
            return self._token
        now = time.monotonic()
        if not self._token or now >= self._renew_at:
            if not self._config.auth.dev_keys:
                raise FailedPrecondition(
                    "set [exchange] provider_token_file: without dev keys the node cannot "
                    "mint its own token for providers",
                    reason="NODE_TOKEN_UNAVAILABLE",
                )
            node = self._config.node
            self._token = mint_token(
                self._config, role=Role.NODE, organisation=DEV_NODE_ORG,
                region_code=node.region_code, subject=f"exchange@{node.name}"[:128],
                ttl_seconds=DEV_TOKEN_TTL,
            )  # fmt: skip
            self._renew_at = now + DEV_TOKEN_TTL / 2
        return self._token


class _Garbage:
    """What a provider sent instead of a message."""


GARBAGE = _Garbage()


def _lenient(message: type[M]) -> Callable[[bytes], M | _Garbage]:
    parse = message.FromString

    def deserialize(data: bytes) -> M | _Garbage:
        try:
            msg = parse(data)
        except (DecodeError, ValueError):
            return GARBAGE
        msg.DiscardUnknownFields()  # whatever else a provider put there stays here
        return msg

    return deserialize


def _checked(message: M | _Garbage, provider: str) -> M:
    if isinstance(message, _Garbage):
        raise MalformedRecord(
            f"the provider {provider} sent a response that is not a valid message",
            metadata={"provider": provider},
        )
    return message


def translate(error: grpc.aio.AioRpcError, provider: str) -> ZhidaError:
    """The caller's view of a provider failure (see the module docstring)."""
    code = error.code()
    meta = {"provider": provider}
    if code is grpc.StatusCode.UNAVAILABLE:
        return Unavailable(
            f"the data provider {provider} is unavailable; try again later",
            reason="PROVIDER_UNAVAILABLE",
            metadata=meta,
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(
            f"the data provider {provider} did not answer in time",
            reason="PROVIDER_TIMEOUT",
            metadata=meta,
        )
    if code is grpc.StatusCode.NOT_FOUND:
        return NotFound(
            f"the data provider {provider} does not hold this dataset",
            reason="DATASET_NOT_FOUND",
            metadata=meta,
        )
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        detail = (error.details() or "")[:200]
        return InvalidArgument(
            f"the data provider {provider} refused the query: {detail}",
            reason="PROVIDER_REJECTED",
            metadata=meta,
        )
    return ZhidaError(
        f"the data provider {provider} failed ({code.name})",
        reason="PROVIDER_ERROR",
        metadata={**meta, "provider_code": code.name},
    )


class RemoteProvider:
    """A department's DataProviderService at ``address`` (see the module docstring)."""

    def __init__(
        self,
        name: str,
        address: str,
        token: Callable[[], str],
        timeout: float,
        *,
        max_message_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.name = name
        self.address = address
        self._token = token
        self.timeout = timeout
        self._max = max_message_bytes
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[str, Any] = {}

    def _call(self, method: str) -> Any:
        if self._channel is None:  # created in the serving loop, on first use
            self._channel = grpc.aio.insecure_channel(
                self.address,
                options=[
                    ("grpc.max_receive_message_length", self._max),
                    ("grpc.max_send_message_length", self._max),
                ],
            )
            ch = self._channel
            self._calls = {
                "QueryRecords": ch.unary_unary(
                    SERVICE + "QueryRecords",
                    request_serializer=ppb.QueryRecordsRequest.SerializeToString,
                    response_deserializer=_lenient(pb.RequestDataResponse),
                ),
                "StreamRecords": ch.unary_stream(
                    SERVICE + "StreamRecords",
                    request_serializer=ppb.StreamRecordsRequest.SerializeToString,
                    response_deserializer=_lenient(pb.StreamDatasetResponse),
                ),
                "StreamChanges": ch.unary_stream(
                    SERVICE + "StreamChanges",
                    request_serializer=ppb.StreamChangesRequest.SerializeToString,
                    response_deserializer=_lenient(pb.ReceiveChangesResponse),
                ),
            }
        return self._calls[method]

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        md: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {self._token()}"),)
        trace = current_trace_id()
        return (*md, ("x-trace-id", trace)) if trace else md

    def _deadline(self, per_answer: bool = True) -> float | None:
        remaining = time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded("the call's deadline passed before the provider was asked")
        if not per_answer:
            return remaining
        return self.timeout if remaining is None else min(remaining, self.timeout)

    async def query(self, q: Query) -> pb.RequestDataResponse:
        request = ppb.QueryRecordsRequest(
            resource_code=q.resource_code, key=q.key, filters=q.filters, page_size=q.page_size,
            page_token=q.page_token, context=q.context,
        )  # fmt: skip
        try:
            reply = await self._call("QueryRecords")(
                request, metadata=self._metadata(), timeout=self._deadline()
            )
        except grpc.aio.AioRpcError as error:
            raise translate(error, self.name) from None
        result: pb.RequestDataResponse = _checked(reply, self.name)
        return result

    async def _messages(self, method: str, request: Message, follow: bool) -> AsyncIterator[Any]:
        call = self._call(method)(
            request, metadata=self._metadata(), timeout=self._deadline(per_answer=False)
        )
        try:
            while True:
                if follow:
                    msg = await call.read()
                else:
                    msg = await asyncio.wait_for(call.read(), self._deadline())
                if msg is _EOF:
                    return
                yield _checked(msg, self.name)
        except grpc.aio.AioRpcError as error:
            raise translate(error, self.name) from None
        except TimeoutError:
            raise DeadlineExceeded(
                f"the data provider {self.name} did not answer in time",
                reason="PROVIDER_TIMEOUT",
                metadata={"provider": self.name},
            ) from None
        finally:
            call.cancel()

    async def stream(
        self, resource_code: str, cursor: str, batch_size: int, context: ppb.DeliveryContext
    ) -> AsyncIterator[pb.StreamDatasetResponse]:
        request = ppb.StreamRecordsRequest(
            resource_code=resource_code, cursor=cursor, batch_size=batch_size, context=context
        )
        async for msg in self._messages("StreamRecords", request, follow=False):
            yield msg

    async def changes(
        self, resource_code: str, cursor: str, follow: bool, context: ppb.DeliveryContext
    ) -> AsyncIterator[pb.ReceiveChangesResponse]:
        request = ppb.StreamChangesRequest(
            resource_code=resource_code, cursor=cursor, follow=follow, context=context
        )
        async for msg in self._messages("StreamChanges", request, follow=follow):
            # a provider's change messages carry no cursor of their own: the last change's
            msg.cursor = msg.changes[-1].cursor if msg.changes else ""
            yield msg

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
