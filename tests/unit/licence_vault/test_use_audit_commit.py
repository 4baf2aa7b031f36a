"""Use records written in the audit log's own durable transaction (both dialects)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from audit_log.events import Action, AuditEvent
from audit_log.models import AuditEventRow
from audit_log.sequencer import Sequencer
from audit_log.sql import SqlLogStorage
from licence_vault.results import FetchResult
from licence_vault.sql import SqlLicenceStore
from licence_vault.types import BUSINESS_LICENCE, FOOD_BUSINESS_PERMIT
from licence_vault.vault import Actor, Vault
from tests.unit.licence_vault.conftest import STATUS_BASE, Clock
from tests.unit.licence_vault.support import RESTAURANT, business_licence, food_permit
from zhida.blobstore import FilesystemBlobStore
from zhida.db import Database

MATTER = "YJS-KBCYD"
TYPES = [BUSINESS_LICENCE.code, FOOD_BUSINESS_PERMIT.code]


@pytest.fixture
def audited(
    database: Database, blobs: FilesystemBlobStore, signer: Any, clock: Clock
) -> Iterator[tuple[Vault, SqlLogStorage]]:
    storage = SqlLogStorage(database)
    sequencer = Sequencer(storage)
    store = SqlLicenceStore(database, companion=sequencer.append_many)
    yield Vault(store, blobs, signer, status_base_uri=STATUS_BASE, clock=clock), storage
    sequencer.close()
    storage.close()


def _events(result: FetchResult) -> list[AuditEvent]:
    return [
        AuditEvent(action=Action.LICENCE_FETCH, time=result.items[0].use.used_at,
                   licence_id=item.licence.licence_id)
        for item in result.items
    ]  # fmt: skip


def _counts(database: Database) -> tuple[int, int]:
    with database.session() as s:
        events = s.scalar(select(func.count()).select_from(AuditEventRow))
        uses = s.execute(text("SELECT count(*) FROM licence_use")).scalar_one()
    return int(events or 0), int(uses)


def _consent(vault: Vault, issuer: Actor, portal: Actor, clock: Clock) -> str:
    vault.issue(issuer, business_licence())
    vault.issue(issuer, food_permit())
    until = clock.now + timedelta(days=1)
    return vault.grant_consent(RESTAURANT, portal.organisation, TYPES, MATTER, until).consent_id


def test_use_records_and_audit_events_commit_together(
    database: Database, audited: tuple[Vault, SqlLogStorage], issuer: Actor, portal: Actor,
    clock: Clock,
) -> None:  # fmt: skip
    vault, storage = audited
    consent_id = _consent(vault, issuer, portal, clock)
    result = vault.fetch(portal, RESTAURANT, TYPES, MATTER, consent_id, record=_events)
    assert _counts(database) == (2, 2)
    assert storage.tree_head().size == 2
    stored = [u.annotation_id for _c, u in vault.holder_uses(RESTAURANT)]
    assert sorted(stored) == sorted(i.use.annotation_id for i in result.items)


def test_a_failing_use_row_takes_the_batchs_audit_events_with_it(
    database: Database, audited: tuple[Vault, SqlLogStorage], issuer: Actor, portal: Actor,
    clock: Clock, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    vault, storage = audited
    consent_id = _consent(vault, issuer, portal, clock)
    vault.fetch(portal, RESTAURANT, [BUSINESS_LICENCE.code], MATTER, consent_id, record=_events)
    taken = vault.holder_uses(RESTAURANT)[0][1].annotation_id
    # The next fetch's use record collides with the stored one (a unique key): the
    # insert fails after the audit rows went in, inside the same transaction.
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(hex=taken))
    head = storage.tree_head()
    with pytest.raises(Exception):  # noqa: B017, PT011 (the dialect's integrity error)
        vault.fetch(portal, RESTAURANT, [BUSINESS_LICENCE.code], MATTER, consent_id,
                    record=_events)  # fmt: skip
    monkeypatch.undo()
    assert _counts(database) == (1, 1)
    assert storage.tree_head() == head
    vault.fetch(portal, RESTAURANT, [BUSINESS_LICENCE.code], MATTER, consent_id, record=_events)
    assert _counts(database) == (2, 2)


def test_sqlite_one_durable_transaction_per_batch(
    sqlite_db: Database, blobs: FilesystemBlobStore, signer: Any, clock: Clock, issuer: Actor,
    portal: Actor,
) -> None:  # fmt: skip
    storage = SqlLogStorage(sqlite_db)
    sequencer = Sequencer(storage)
    store = SqlLicenceStore(sqlite_db, companion=sequencer.append_many)
    vault = Vault(store, blobs, signer, status_base_uri=STATUS_BASE, clock=clock)
    consent_id = _consent(vault, issuer, portal, clock)
    storage.close()  # the writer connection is opened anew, traced
    seen: list[str] = []
    event.listen(sqlite_db.engine, "connect", lambda c, _r: c.set_trace_callback(seen.append))
    sqlite_db.engine.pool.dispose()
    store._driver.release()
    vault.fetch(portal, RESTAURANT, TYPES, MATTER, consent_id, record=_events)
    begin = seen.index("BEGIN IMMEDIATE")
    assert seen.count("BEGIN IMMEDIATE") == 1  # the use records have no transaction of their own
    assert "PRAGMA synchronous=FULL" in seen[:begin]
    uses = next(i for i, s in enumerate(seen) if s.startswith("INSERT INTO licence_use"))
    audit = next(i for i, s in enumerate(seen) if s.startswith("INSERT INTO audit_event"))
    assert begin < audit < uses < seen.index("COMMIT", uses)
    sequencer.close()
    storage.close()
