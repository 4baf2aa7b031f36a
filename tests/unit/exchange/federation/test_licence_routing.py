"""Routing a licence fetch by the index: stay here, go to the one holding region, or refuse."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from sqlalchemy import delete

from audit_log.events import Action, Outcome
from catalog_registry.sample_tables import make_uscc
from exchange.federation.licence_index import IndexEntry, LicenceIndexStore
from exchange.federation.licence_routing import LicenceLocator, entry_message
from exchange.federation.models import LicenceIndexRow
from licence_vault.identifier import LicenceId
from licence_vault.types import BUSINESS_LICENCE, FOOD_BUSINESS_PERMIT
from tests.unit.exchange.federation.test_licence_index import add_licence
from zhida.db import Database
from zhida.db.migrate import upgrade
from zhida.errors import FailedPrecondition, NotFound, Unavailable
from zhida.federation.v1 import licence_index_pb2 as ipb
from zhida.federation.v1 import licence_index_pb2_grpc as ipb_grpc
from zhida.licence.v1 import licence_vault_service_pb2 as lpb

T = TypeVar("T")
SHOP = make_uscc("430100", 880001, kind="91")
MATTER = "YJS-KBCYD"  # 营业执照 + 食品经营许可证
ISSUER = "11430000000160012B"


def ref(holder: str) -> str:
    return hashlib.sha256(holder.encode()).hexdigest()


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Action, dict[str, Any]]] = []

    async def record(self, action: Action, **fields: Any) -> int:
        self.events.append((action, fields))
        return len(self.events)


class Audit:
    def holder_ref(self, holder: str) -> str:
        return ref(holder)


class Runtime:
    """What the locator uses of a NodeRuntime."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.audit = Audit()
        self.recorder = Recorder()

    async def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    upgrade(url)
    database = Database(url)
    yield Runtime(database)
    database.dispose()


def entry(region: str, serial: int, type_code: str = BUSINESS_LICENCE.code) -> IndexEntry:
    licence_id = str(LicenceId(type_code, ISSUER, serial, 1))
    return IndexEntry(ref(SHOP), licence_id, type_code, region)


def fetch(holder: str = SHOP, *types: str, matter: str = MATTER) -> lpb.FetchLicencesRequest:
    return lpb.FetchLicencesRequest(
        holder_code=holder, type_codes=list(types or [BUSINESS_LICENCE.code]), matter_code=matter
    )


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def no_channel(address: str) -> grpc.aio.Channel:
    raise AssertionError(f"no parent should be asked ({address})")


def test_a_request_the_vault_would_refuse_anyway_stays_here(runtime: Runtime) -> None:
    locator = LicenceLocator(runtime, "420000", parent="", channel=no_channel)
    assert run(locator.region_for(fetch("not-a-holder"))) is None
    assert run(locator.region_for(fetch(matter="NO-SUCH-MATTER"))) is None
    assert run(locator.region_for(fetch(SHOP, "000000000000000000001"))) is None
    assert run(locator.region_for(lpb.FetchLicencesRequest(holder_code=SHOP))) is None
    assert not runtime.recorder.events


def test_licences_held_here_are_served_here(runtime: Runtime) -> None:
    add_licence(runtime.database, ISSUER, 7, SHOP)  # a 营业执照 row of this node's vault
    LicenceIndexStore(runtime.database).add([entry("430100", 1)])  # and one below
    locator = LicenceLocator(runtime, "430000", parent="", channel=no_channel)
    assert run(locator.region_for(fetch(SHOP, BUSINESS_LICENCE.code))) is None
    # a type this vault does not hold: found below
    LicenceIndexStore(runtime.database).add([entry("430100", 2, FOOD_BUSINESS_PERMIT.code)])
    assert run(locator.region_for(fetch(SHOP, FOOD_BUSINESS_PERMIT.code))) == "430100"


def test_the_subtree_index_routes_down_and_is_remembered(runtime: Runtime) -> None:
    LicenceIndexStore(runtime.database).add([entry("420102", 1)])
    locator = LicenceLocator(runtime, "420000", parent="", channel=no_channel)
    assert run(locator.region_for(fetch())) == "420102"
    with runtime.database.session() as s:  # gone from the index: the cached answer still holds
        s.execute(delete(LicenceIndexRow))
    assert run(locator.region_for(fetch())) == "420102"


def test_licences_in_several_regions_are_not_guessed(runtime: Runtime) -> None:
    LicenceIndexStore(runtime.database).add(
        [entry("420102", 1), entry("420100", 2, FOOD_BUSINESS_PERMIT.code)]
    )
    locator = LicenceLocator(runtime, "420000", parent="", channel=no_channel)
    assert run(locator.region_for(fetch(SHOP, BUSINESS_LICENCE.code))) == "420102"
    with pytest.raises(FailedPrecondition) as info:
        run(locator.region_for(fetch(SHOP, BUSINESS_LICENCE.code, FOOD_BUSINESS_PERMIT.code)))
    assert info.value.reason == "LICENCES_IN_SEVERAL_REGIONS"
    assert info.value.metadata["regions"] == "420100,420102"


def test_a_holder_nobody_knows_is_not_found_and_recorded(runtime: Runtime) -> None:
    locator = LicenceLocator(runtime, "100000", parent="", channel=no_channel)
    with pytest.raises(NotFound) as info:
        run(locator.region_for(fetch()))
    assert info.value.reason == "LICENCE_HOLDER_UNKNOWN"
    ((action, fields),) = runtime.recorder.events
    assert action is Action.DATA_REQUEST
    assert (fields["outcome"], fields["reason"]) == (Outcome.DENIED, "LICENCE_HOLDER_UNKNOWN")
    assert fields["holder_id"] == SHOP
    assert fields["details"]["federation"] == "origin"


class Parent(ipb_grpc.LicenceIndexServiceServicer):
    def __init__(self) -> None:
        self.asked: list[ipb.LocateHolderRequest] = []

    async def PushLicenceIndex(
        self, request: ipb.PushLicenceIndexRequest, context: Any
    ) -> ipb.PushLicenceIndexResponse:
        raise NotImplementedError

    async def LocateHolder(
        self, request: ipb.LocateHolderRequest, context: Any
    ) -> ipb.LocateHolderResponse:
        self.asked.append(request)
        found = entry("430000", 9)
        return ipb.LocateHolderResponse(
            holder_ref=request.holder_ref, entries=[entry_message(found)], answered_by="100000"
        )


def test_the_parent_is_asked_by_keyed_hash_when_the_subtree_knows_none(runtime: Runtime) -> None:
    async def scenario() -> tuple[str | None, list[ipb.LocateHolderRequest]]:
        parent = Parent()
        server = grpc.aio.server()
        ipb_grpc.add_LicenceIndexServiceServicer_to_server(parent, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            locator = LicenceLocator(
                runtime, "420000", parent=f"127.0.0.1:{port}", channel=lambda _a: channel
            )
            return await locator.region_for(fetch()), parent.asked
        finally:
            await channel.close(None)
            await server.stop(None)

    region, asked = run(scenario())
    assert region == "430000"
    ((request,),) = [asked]
    assert request.holder_ref == ref(SHOP)  # never the holder's ID number
    assert list(request.type_codes) == [BUSINESS_LICENCE.code]


def test_a_parent_that_cannot_be_reached_is_unavailable(runtime: Runtime) -> None:
    async def scenario() -> None:
        channel = grpc.aio.insecure_channel("127.0.0.1:9")  # nothing listens on the discard port
        try:
            locator = LicenceLocator(
                runtime, "420000", parent="127.0.0.1:9", channel=lambda _a: channel
            )
            await locator.region_for(fetch())
        finally:
            await channel.close(None)

    with pytest.raises(Unavailable) as info:
        run(scenario())
    assert info.value.reason == "NEIGHBOUR_UNAVAILABLE"
    assert info.value.metadata["region"] == "100000"
