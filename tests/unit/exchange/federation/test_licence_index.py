"""The licence index: own licences in, children's pushes checked, pages out, look-ups."""

from __future__ import annotations

import doctest
import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert

from exchange.federation import licence_index
from exchange.federation.licence_index import (
    GapCursor,
    IndexEntry,
    LicenceIndex,
    LicenceIndexStore,
)
from licence_vault.identifier import LicenceId
from licence_vault.models import LicenceRow
from zhida.auth.principal import Principal, Role
from zhida.db import Database
from zhida.db.migrate import upgrade
from zhida.errors import InvalidArgument, PermissionDenied

TYPE = "111000000000170137001"  # 国家市场监督管理总局 + 001
HUNAN = "11430000000160012B"
HUBEI = "11420000000020175T"


def ref(holder: str) -> str:
    return hashlib.sha256(holder.strip().upper().encode()).hexdigest()


def node(region: str) -> Principal:
    return Principal(f"node:{region}", Role.NODE, f"zhida-{region}", region, 4_102_444_800)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'index.db'}"
    upgrade(url)
    db = Database(url)
    yield db
    db.dispose()


def add_licence(db: Database, issuer: str, serial: int, holder: str) -> str:
    licence_id = str(LicenceId(TYPE, issuer, serial, 1))
    with db.session() as s:
        s.execute(
            insert(LicenceRow).values(
                licence_id=licence_id,
                lineage=licence_id.rsplit(".", 2)[0],
                version=1,
                type_code=TYPE,
                issuer_code=issuer,
                holder_code=holder,
                status="valid",
                status_idx=serial,
                issued_at=datetime(2025, 1, 1, tzinfo=UTC),
                valid_from=date(2025, 1, 1),
                valid_until=None,
                jws_digest="0" * 64,
                pdf_digest=None,
                payload="{}",
            )
        )
    return licence_id


def test_examples_in_the_docstrings() -> None:
    result = doctest.testmod(licence_index)
    assert result.attempted > 0
    assert result.failed == 0


def test_gap_cursor_waits_for_a_gap_then_steps_over_it() -> None:
    now = [0.0]
    cursor = GapCursor(0, gap_wait=5.0, clock=lambda: now[0])
    assert cursor.advance([1, 2, 4, 5]) == [1, 2]
    now[0] = 3.0
    assert cursor.advance([4, 5]) == []  # 3 may still commit
    assert cursor.advance([3, 4, 5]) == [3, 4, 5]  # it did
    assert cursor.advance([7]) == []  # a new gap, first seen at 3.0: its own wait
    now[0] = 7.0
    assert cursor.advance([7]) == []
    now[0] = 8.5
    assert cursor.advance([7, 8]) == [7, 8]  # 6 rolled back: skipped after the wait
    assert cursor.position == 8


def test_own_licences_enter_the_index_and_flow_up(database: Database) -> None:
    hunan = LicenceIndex(LicenceIndexStore(database), "430000", ref)
    first = add_licence(database, HUNAN, 1, "430000199001011234")
    second = add_licence(database, HUNAN, 2, "91430000MA4L0XXX7A")
    own = GapCursor(0)
    assert hunan.index_own(own) == 2
    assert own.position == 2
    assert hunan.index_own(own) == 0  # nothing new

    where = hunan.locate(holder_id=" 430000199001011234 ")
    assert [e.licence_id for e in where.entries] == [first]
    assert where.regions == ("430000",)
    assert where.provinces == ("430000",)
    assert hunan.locate(holder_ref=ref("91430000MA4L0XXX7A")).entries[0].licence_id == second

    push = GapCursor(0)
    page = hunan.pending(push, limit=1)
    assert [e.licence_id for e in page] == [first]
    assert [e.licence_id for e in hunan.pending(push)] == [second]
    assert hunan.pending(push) == []


def test_the_national_index_takes_pushes_from_below_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'national.db'}"
    upgrade(url)
    db = Database(url)
    try:
        national = LicenceIndex(LicenceIndexStore(db), "100000", ref)
        entry = IndexEntry(
            ref("430000199001011234"), str(LicenceId(TYPE, HUNAN, 1, 1)), TYPE, "430000"
        )
        result = national.accept_push(node("430000"), [entry])
        assert (result.accepted, result.duplicates) == (1, 0)
        again = national.accept_push(node("430000"), [entry])
        assert (again.accepted, again.duplicates) == (0, 1)
        where = national.locate(holder_id="430000199001011234", type_code=TYPE)
        assert where.provinces == ("430000",)
        assert (
            national.locate(holder_id="430000199001011234", type_code=TYPE[:-1] + "9").entries == ()
        )

        # a county's entry pushed up by its province keeps the county's region
        county = IndexEntry(ref("x"), str(LicenceId(TYPE, HUBEI, 7, 1)), TYPE, "420102")
        national.accept_push(node("420000"), [county])
        assert national.locate(holder_id="x").entries[0].province == "420000"

        with pytest.raises(PermissionDenied):  # Hubei may not speak for Hunan
            national.accept_push(node("420000"), [entry])
        bad = IndexEntry("nothex", "1.2.3", "bad", "999999")
        with pytest.raises(InvalidArgument) as info:
            national.accept_push(node("420000"), [bad])
        fields = {v.field for v in info.value.violations}
        assert fields == {
            "entries[0].holder_ref",
            "entries[0].licence_id",
            "entries[0].type_code",
            "entries[0].region_code",
        }
        with pytest.raises(PermissionDenied):  # only nodes
            national.accept_push(
                Principal("admin", Role.ADMIN, HUBEI, "430000", 4_102_444_800), [entry]
            )
        with pytest.raises(PermissionDenied):  # not from above or beside
            LicenceIndex(LicenceIndexStore(db), "430000", ref).accept_push(node("100000"), [entry])
        with pytest.raises(InvalidArgument):
            national.locate(holder_id=" ")
        with pytest.raises(InvalidArgument):
            national.locate(holder_ref="ABC")
    finally:
        db.dispose()
