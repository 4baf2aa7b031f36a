"""Documents in the database, use records riding a companion commit, durability (both dialects)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Date, event, text

from licence_vault.results import FetchRequest
from licence_vault.sql import SqlLicenceStore
from licence_vault.sql_fast import DriverPaths
from licence_vault.types import BUSINESS_LICENCE, FOOD_BUSINESS_PERMIT
from licence_vault.vault import Actor, Vault
from tests.unit.licence_vault.conftest import STATUS_BASE, Clock
from tests.unit.licence_vault.support import (
    RESTAURANT,
    business_licence,
    food_permit,
    move_jws_to_blobs,
    tamper_stored_jws,
)
from zhida.blobstore import FilesystemBlobStore
from zhida.db import Database
from zhida.db.base import UTCDateTime
from zhida.errors import IntegrityError, PermissionDenied

MATTER = "YJS-KBCYD"
TYPES = [BUSINESS_LICENCE.code, FOOD_BUSINESS_PERMIT.code]


def _issue_and_consent(vault: Vault, issuer: Actor, portal: Actor, clock: Clock) -> str:
    vault.issue(issuer, business_licence())
    vault.issue(issuer, food_permit())
    until = clock.now + timedelta(days=1)
    return vault.grant_consent(RESTAURANT, portal.organisation, TYPES, MATTER, until).consent_id


def test_the_jws_is_stored_with_its_issue_event_and_read_back_checked(
    database: Database, make_vault: Callable[[Database], Vault], issuer: Actor,
    blobs: FilesystemBlobStore,
) -> None:  # fmt: skip
    vault = make_vault(database)
    items = vault.issue_batch(issuer, [business_licence("b1"), food_permit("b2")], with_pdf=False)
    licences = [item.result.licence for item in items if item.result]
    tokens = {item.result.licence.licence_id: item.result.jws for item in items if item.result}
    assert vault.store.documents(licences) == tokens
    assert not any(blobs.exists(lic.jws_digest) for lic in licences)  # no blob per licence
    # the history shows the issue event's record as the digest, as the wire contract says
    _versions, history = vault.history(licences[0].licence_id)
    assert [e.record for e in history] == [f"sha256:{licences[0].jws_digest}"]
    # a retried batch finds the same licences and stores nothing twice
    again = vault.issue_batch(issuer, [business_licence("b1"), food_permit("b2")], with_pdf=False)
    assert [i.result.licence for i in again if i.result] == licences
    assert not any(i.result.created for i in again if i.result)
    assert [i.result.jws for i in again if i.result] == [tokens[lic.licence_id] for lic in licences]
    assert vault.store.count() == 2
    with database.session() as s:
        events = s.execute(text("SELECT count(*) FROM licence_event")).scalar_one()
    assert events == 2


def test_an_amendment_stores_the_new_versions_jws(
    database: Database, make_vault: Callable[[Database], Vault], issuer: Actor
) -> None:
    vault = make_vault(database)
    v1 = vault.issue(issuer, food_permit()).licence
    v2 = vault.amend(issuer, v1.licence_id, changes={"经营项目": "热食类食品制售"}, reason="变更")
    assert vault.read_jws(v2.licence) == v2.jws
    assert vault.store.documents([v1, v2.licence]).keys() == {v1.licence_id, v2.licence.licence_id}
    _versions, history = vault.history(v2.licence.licence_id)
    assert [e.action for e in history] == ["issue", "amend", "issue"]
    assert history[2].record == f"sha256:{v2.licence.jws_digest}"


def test_licences_whose_jws_is_in_the_blob_store_still_work(
    database: Database, make_vault: Callable[[Database], Vault], issuer: Actor, portal: Actor,
    clock: Clock, blobs: FilesystemBlobStore,
) -> None:  # fmt: skip
    """Licences issued before the JWS moved into the database keep it in the blob store."""
    vault = make_vault(database)
    consent_id = _issue_and_consent(vault, issuer, portal, clock)
    old = vault.store.by_holder(RESTAURANT, [BUSINESS_LICENCE.code])[0]
    jws = vault.read_jws(old)
    assert move_jws_to_blobs(database, blobs, old.licence_id) == old.jws_digest
    assert vault.store.documents([old]) == {}
    assert vault.read_jws(old) == jws
    fetched = vault.fetch(portal, RESTAURANT, TYPES, MATTER, consent_id)
    assert {i.licence.licence_id: i.jws for i in fetched.items}[old.licence_id] == jws
    assert vault.verify_id(old.licence_id)[1].valid
    # and a tampered blob is still caught
    path = blobs.path_of(f"sha256/{old.jws_digest[:2]}/{old.jws_digest[2:4]}/{old.jws_digest}")
    path.write_bytes(path.read_bytes().replace(b"e", b"f", 1))
    with pytest.raises(IntegrityError) as err:
        vault.read_jws(old)
    assert err.value.metadata["licence_id"] == old.licence_id  # for the audit event


def test_a_tampered_document_fails_only_its_own_fetch_in_a_batch(
    database: Database, make_vault: Callable[[Database], Vault], issuer: Actor, portal: Actor,
    clock: Clock,
) -> None:  # fmt: skip
    vault = make_vault(database)
    consent_id = _issue_and_consent(vault, issuer, portal, clock)
    bl = vault.store.by_holder(RESTAURANT, [BUSINESS_LICENCE.code])[0]
    tamper_stored_jws(database, bl.licence_id)
    outcomes = vault.fetch_many(
        [
            FetchRequest(portal, RESTAURANT, [BUSINESS_LICENCE.code], MATTER, consent_id),
            FetchRequest(portal, RESTAURANT, [FOOD_BUSINESS_PERMIT.code], MATTER, consent_id),
            FetchRequest(portal, RESTAURANT, [FOOD_BUSINESS_PERMIT.code], MATTER, "no-such"),
        ]
    )
    assert isinstance(outcomes[0], IntegrityError)
    assert outcomes[0].metadata["licence_id"] == bl.licence_id  # the refusal names it
    assert not isinstance(outcomes[1], Exception)
    assert isinstance(outcomes[2], PermissionDenied)
    assert outcomes[2].reason == "CONSENT_NOT_FOUND"
    # only the fetch that succeeded left a use record
    uses = vault.holder_uses(RESTAURANT)
    assert [u.annotation_id for _c, u in uses] == [outcomes[1].items[0].use.annotation_id]


class Companion:
    """Stands for the node's audit log: a durable commit on the same database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.calls: list[list[Any]] = []
        self.visible_uses: list[int] = []
        self.fail = False
        self.gate: threading.Event | None = None

    def __call__(self, records: Sequence[Any]) -> None:
        # the batch's use records are committed before the companion commits
        with self.database.session() as s:
            self.visible_uses.append(
                s.execute(text("SELECT count(*) FROM licence_use")).scalar_one()
            )
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise RuntimeError("the audit commit failed")
        self.calls.append(list(records))


@pytest.fixture
def companion_vault(
    database: Database, blobs: FilesystemBlobStore, signer: Any, clock: Clock
) -> tuple[Vault, Companion]:
    companion = Companion(database)
    store = SqlLicenceStore(database, companion=companion)
    return Vault(store, blobs, signer, status_base_uri=STATUS_BASE, clock=clock), companion


def test_use_records_ride_the_companion_commit(
    companion_vault: tuple[Vault, Companion], issuer: Actor, portal: Actor, clock: Clock
) -> None:
    vault, companion = companion_vault
    consent_id = _issue_and_consent(vault, issuer, portal, clock)
    result = vault.fetch(
        portal, RESTAURANT, TYPES, MATTER, consent_id,
        record=lambda r: [f"audit:{i.use.annotation_id}" for i in r.items],
    )  # fmt: skip
    assert companion.calls == [[f"audit:{i.use.annotation_id}" for i in result.items]]
    assert companion.visible_uses == [2]  # written first, then the durable commit
    assert len(vault.holder_uses(RESTAURANT)) == 2
    # a fetch without companion records is made durable on its own
    vault.fetch(portal, RESTAURANT, TYPES, MATTER, consent_id)
    assert len(companion.calls) == 1


def test_no_fetch_is_answered_before_its_companion_commit(
    companion_vault: tuple[Vault, Companion], issuer: Actor, portal: Actor, clock: Clock
) -> None:
    vault, companion = companion_vault
    consent_id = _issue_and_consent(vault, issuer, portal, clock)
    companion.gate = threading.Event()
    answered = threading.Event()

    def fetch() -> None:
        vault.fetch(portal, RESTAURANT, TYPES, MATTER, consent_id, record=lambda r: ["event"])
        answered.set()

    worker = threading.Thread(target=fetch)
    worker.start()
    assert not answered.wait(0.3)  # the use records are written, the commit is pending
    companion.gate.set()
    worker.join(5)
    assert answered.is_set()


def test_a_failed_companion_commit_answers_no_fetch(
    companion_vault: tuple[Vault, Companion], issuer: Actor, portal: Actor, clock: Clock
) -> None:
    """A crash or failure between the use records and the audit commit: never an OK."""
    vault, companion = companion_vault
    consent_id = _issue_and_consent(vault, issuer, portal, clock)
    companion.fail = True
    requests = [
        FetchRequest(portal, RESTAURANT, TYPES, MATTER, consent_id, record=lambda r: ["e"]),
        FetchRequest(portal, RESTAURANT, [BUSINESS_LICENCE.code], MATTER, consent_id,
                     record=lambda r: ["e"]),
    ]  # fmt: skip
    outcomes = vault.fetch_many(requests)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    with pytest.raises(RuntimeError):
        vault.fetch(portal, RESTAURANT, TYPES, MATTER, consent_id, record=lambda r: ["e"])


def test_records_without_a_companion_are_refused(
    database: Database, make_vault: Callable[[Database], Vault], issuer: Actor, portal: Actor,
    clock: Clock,
) -> None:  # fmt: skip
    vault = make_vault(database)
    consent_id = _issue_and_consent(vault, issuer, portal, clock)
    with pytest.raises(ValueError, match="companion"):
        vault.fetch(portal, RESTAURANT, TYPES, MATTER, consent_id, record=lambda r: ["e"])
    assert vault.holder_uses(RESTAURANT) == []


def _sqlite_statements(database: Database) -> list[str]:
    """Every SQL statement the SQLite connections opened from now on run."""
    seen: list[str] = []

    def trace(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.set_trace_callback(seen.append)

    database.engine.pool.dispose()  # new connections get the trace
    event.listen(database.engine, "connect", trace)
    return seen


def test_sqlite_waits_for_the_disk_only_without_a_companion(
    sqlite_db: Database, blobs: FilesystemBlobStore, signer: Any, clock: Clock, issuer: Actor,
    portal: Actor,
) -> None:  # fmt: skip
    companion = Companion(sqlite_db)
    store = SqlLicenceStore(sqlite_db, companion=companion)
    riding = Vault(store, blobs, signer, status_base_uri=STATUS_BASE, clock=clock)
    consent_id = _issue_and_consent(riding, issuer, portal, clock)
    seen = _sqlite_statements(sqlite_db)
    store._driver.release()  # its own connection too is opened anew, traced
    riding.fetch(portal, RESTAURANT, TYPES, MATTER, consent_id, record=lambda r: ["e"])
    inserts = [i for i, sql in enumerate(seen) if sql.startswith("INSERT INTO licence_use")]
    assert inserts
    assert "PRAGMA synchronous=FULL" not in seen  # the companion's commit syncs
    seen.clear()
    riding.fetch(portal, RESTAURANT, TYPES, MATTER, consent_id)  # nothing to ride on
    full = seen.index("PRAGMA synchronous=FULL")
    insert = next(i for i, sql in enumerate(seen) if sql.startswith("INSERT INTO licence_use"))
    assert full < insert < seen.index("COMMIT", insert) < seen.index("PRAGMA synchronous=NORMAL")
    seen.clear()
    riding.issue(issuer, business_licence("durable"))
    assert "PRAGMA synchronous=FULL" in seen  # an issue is durable when it returns


def test_driver_rows_are_stored_as_sqlalchemy_would_store_them(
    sqlite_db: Database, make_vault: Callable[[Database], Vault], issuer: Actor
) -> None:
    """Timestamps and dates written on the driver path are the text SQLAlchemy would write."""
    vault = make_vault(sqlite_db)
    lic = vault.issue(issuer, food_permit()).licence
    dialect = sqlite_db.engine.dialect
    as_time = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    as_date = Date().dialect_impl(dialect).bind_processor(dialect)
    assert as_time is not None
    assert as_date is not None
    with sqlite_db.engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT issued_at, valid_from, valid_until FROM licence WHERE licence_id = ?",
            (lic.licence_id,),
        ).one()
    assert tuple(stored) == (
        as_time(lic.issued_at), as_date(lic.valid_from), as_date(lic.valid_until),
    )  # fmt: skip
    paths = DriverPaths(sqlite_db)
    assert paths.bind_time(lic.issued_at) == as_time(lic.issued_at)
    assert vault.get(lic.licence_id) == lic
