"""An example department system implementing ``zhida.provider.v1.DataProviderService``.

It serves the synthetic business registry of :mod:`exchange.sample_registry`
(武汉市市场监督管理局, resource ``1-02-001-0000-000008``) from memory, as the
market regulator's own system would: queries by key (the unified social
credit code) or by equality filters with page tokens, the whole dataset as a
stream from a cursor (a record index), and a change feed (every record once,
as an upsert; with ``follow`` the stream then stays open). It deliberately
sends more than the catalogue resource offers (the representative's identity
number, a phone number, an internal note): the node must remove them.

Callers must present a bearer token with role ``node`` that verifies against
the deployment's JWKS (``auth.jwks_file``): the node's own interceptor
(:class:`~zhida.server.interceptor.ZhidaInterceptor`) and policy table
(:mod:`zhida.auth.policy`) do the checking, as on a node.

For tests of the node's failure handling ``fault`` makes it misbehave:
``"malformed"`` answers bytes that are not a message, ``"slow"`` answers
after :data:`SLOW_SECONDS`.

Run it with ``zhida provider example`` (:mod:`zhida.cli.provider`), which
prints one JSON line ``{"msg": "provider started", "listen": "host:port"}``.

Example::

    provider = ExampleProvider(companies(1000))
    server, address = await start_server(provider, "127.0.0.1:0", config)
    ...
    await server.stop(1)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import grpc

from exchange.sample_registry import KEY_ITEM, RESOURCE_CODE
from zhida.auth.policy import authorize, is_public
from zhida.auth.verifier import TokenVerifier
from zhida.config import Config
from zhida.errors import FieldViolation, InvalidArgument, NotFound
from zhida.provider.v1 import data_provider_service_pb2 as ppb
from zhida.provider.v1 import data_provider_service_pb2_grpc as ppb_grpc
from zhida.server.interceptor import ZhidaInterceptor

SERVICE = "zhida.provider.v1.DataProviderService"
SLOW_SECONDS = 30.0
DEFAULT_PAGE, MAX_PAGE = 100, 1000
DEFAULT_BATCH, MAX_BATCH = 500, 5000
FAULTS = ("none", "malformed", "slow")
GARBAGE = b"\xff\xff\xff\xff\x0f"  # not a protobuf message


def _index(token: str, field: str) -> int:
    if not token:
        return 0
    if token.isascii() and token.isdigit():
        return int(token)
    raise InvalidArgument(
        f"bad {field}", reason="INVALID_CURSOR", violations=[FieldViolation(field, "not ours")]
    )


class ExampleProvider(ppb_grpc.DataProviderServiceServicer):
    """Serves ``rows`` (item name → value) as each of ``resource_codes``; see the module doc."""

    def __init__(
        self,
        rows: Iterable[Mapping[str, str]],
        *,
        resource_codes: Iterable[str] = (RESOURCE_CODE,),
        key_item: str = KEY_ITEM,
        fault: str = "none",
    ) -> None:
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}")
        self.resource_codes = frozenset(resource_codes)
        self.fault = fault
        self.records = [ppb.Record(key=row[key_item], fields=row) for row in rows]
        self.by_key = {r.key: r for r in self.records}
        self.calls = 0

    def _check(self, resource_code: str) -> None:
        self.calls += 1
        if resource_code not in self.resource_codes:
            raise NotFound(f"no dataset {resource_code!r} here", reason="DATASET_NOT_FOUND")

    async def _maybe_slow(self) -> None:
        if self.fault == "slow":
            await asyncio.sleep(SLOW_SECONDS)

    async def QueryRecords(
        self, request: ppb.QueryRecordsRequest, context: Any
    ) -> ppb.QueryRecordsResponse:
        self._check(request.resource_code)
        await self._maybe_slow()
        if request.key:
            found = self.by_key.get(request.key)
            return ppb.QueryRecordsResponse(records=[found] if found else [])
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        start = _index(request.page_token, "page_token")
        filters = dict(request.filters)
        out: list[ppb.Record] = []
        for i in range(start, len(self.records)):
            record = self.records[i]
            if all(record.fields.get(k) == v for k, v in filters.items()):
                out.append(record)
                if len(out) == size:
                    more = i + 1 < len(self.records)
                    return ppb.QueryRecordsResponse(
                        records=out, next_page_token=str(i + 1) if more else ""
                    )
        return ppb.QueryRecordsResponse(records=out)

    async def StreamRecords(
        self, request: ppb.StreamRecordsRequest, context: Any
    ) -> AsyncIterator[ppb.StreamRecordsResponse]:
        self._check(request.resource_code)
        await self._maybe_slow()
        size = min(request.batch_size or DEFAULT_BATCH, MAX_BATCH)
        start = _index(request.cursor, "cursor")
        for i in range(start, len(self.records), size):
            end = min(i + size, len(self.records))
            yield ppb.StreamRecordsResponse(records=self.records[i:end], cursor=str(end))

    async def StreamChanges(
        self, request: ppb.StreamChangesRequest, context: Any
    ) -> AsyncIterator[ppb.StreamChangesResponse]:
        self._check(request.resource_code)
        await self._maybe_slow()
        start = _index(request.cursor, "cursor")
        for i in range(start, len(self.records), DEFAULT_BATCH):
            end = min(i + DEFAULT_BATCH, len(self.records))
            yield ppb.StreamChangesResponse(
                changes=[
                    ppb.Change(
                        operation=ppb.CHANGE_OPERATION_UPSERT,
                        record=self.records[j],
                        cursor=str(j + 1),
                    )
                    for j in range(i, end)
                ]
            )
        if request.follow:  # this registry does not change while the example runs
            await asyncio.Event().wait()


def handlers(provider: ExampleProvider) -> grpc.GenericRpcHandler[Any, Any]:
    """The service's method handlers; with ``fault="malformed"`` every answer is garbage."""

    def serializer(message_type: Any) -> Callable[[Any], bytes]:
        if provider.fault == "malformed":
            return lambda _message: GARBAGE
        serialize: Callable[[Any], bytes] = message_type.SerializeToString
        return serialize

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "QueryRecords": grpc.unary_unary_rpc_method_handler(
                provider.QueryRecords,
                request_deserializer=ppb.QueryRecordsRequest.FromString,
                response_serializer=serializer(ppb.QueryRecordsResponse),
            ),
            "StreamRecords": grpc.unary_stream_rpc_method_handler(
                provider.StreamRecords,
                request_deserializer=ppb.StreamRecordsRequest.FromString,
                response_serializer=serializer(ppb.StreamRecordsResponse),
            ),
            "StreamChanges": grpc.unary_stream_rpc_method_handler(
                provider.StreamChanges,
                request_deserializer=ppb.StreamChangesRequest.FromString,
                response_serializer=serializer(ppb.StreamChangesResponse),
            ),
        },
    )


async def start_server(
    provider: ExampleProvider, listen: str, config: Config | None
) -> tuple[grpc.aio.Server, str]:
    """Start serving ``provider`` on ``listen``; with ``config``, node tokens are required."""
    interceptors = []
    if config is not None:
        verifier = TokenVerifier(config.auth)
        interceptors.append(ZhidaInterceptor(verifier, authorize=authorize, is_public=is_public))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ],
    )
    server.add_generic_rpc_handlers((handlers(provider),))
    port = server.add_insecure_port(listen)
    await server.start()
    return server, f"{listen.rpartition(':')[0]}:{port}"
