"""The SQL store on SQLite and PostgreSQL: counters, idempotent inserts, compare-and-set, reads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest

from licence_vault.model import LicenceEvent, LicenceStatus
from licence_vault.sql import SqlLicenceStore
from licence_vault.store import IssuedItem, RequestIdsTaken
from licence_vault.types import BUSINESS_LICENCE, FOOD_BUSINESS_PERMIT
from licence_vault.vault import Actor, ExpiryReport, Vault
from tests.unit.licence_vault.conftest import Clock
from tests.unit.licence_vault.support import JIANGAN_SAMR, RESTAURANT, business_licence, food_permit
from zhida.db import Database
from zhida.errors import FailedPrecondition

T = BUSINESS_LICENCE.code


def test_reservations_never_overlap(database: Database) -> None:
    store = SqlLicenceStore(database)
    got: list[tuple[int, int]] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            r = store.reserve(JIANGAN_SAMR, {T: 3}, 3)
            with lock:
                got.append((r.serial_start[T], r.status_start))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    serials = sorted(s for s, _ in got)
    statuses = sorted(i for _, i in got)
    assert serials == list(range(1, 61, 3))
    assert statuses == list(range(0, 60, 3))
    state = store.status_list_state(JIANGAN_SAMR)
    assert (state.next_index, state.version) == (60, 0)
    assert store.issuers() == [JIANGAN_SAMR]


def test_vault_on_each_dialect(
    database: Database, make_vault: Callable[[Database], Vault], issuer: Actor, clock: Clock
) -> None:
    vault = make_vault(database)
    bl = vault.issue(issuer, business_licence()).licence
    fp = vault.issue(issuer, food_permit()).licence
    assert vault.issue(issuer, business_licence()).licence == bl  # idempotent
    stored = vault.get(bl.licence_id)
    assert stored == bl  # every field round-trips (dates, aware datetimes, payload)
    assert {x.licence_id for x in vault.store.by_holder(RESTAURANT)} == {
        bl.licence_id,
        fp.licence_id,
    }
    assert [
        x.licence_id for x in vault.store.by_holder(RESTAURANT, [FOOD_BUSINESS_PERMIT.code])
    ] == [fp.licence_id]
    v2 = vault.amend(issuer, fp.licence_id, changes={"经营项目": "热食类食品制售"}, reason="变更")
    vault.revoke(issuer, bl.licence_id, "吊销")
    assert vault.store.status_entries(JIANGAN_SAMR) == {bl.status_idx: 1, fp.status_idx: 3}
    assert vault.store.status_list_state(JIANGAN_SAMR).version == 2
    assert [x.version for x in vault.store.versions(fp.lineage)] == [1, 2]
    assert vault.store.by_issuer(JIANGAN_SAMR, limit=10)[0].issuer_code == JIANGAN_SAMR
    consent = vault.grant_consent(
        RESTAURANT, "11420106000041013B", [FOOD_BUSINESS_PERMIT.code], "YJS-KBCYD",
        clock.now + timedelta(days=3),
    )  # fmt: skip
    assert vault.store.get_consent(consent.consent_id) == consent
    portal = Actor("11420106000041013B", "portal")
    result = vault.fetch(portal, RESTAURANT, [FOOD_BUSINESS_PERMIT.code], "YJS-KBCYD",
                         consent.consent_id)  # fmt: skip
    assert [i.licence.licence_id for i in result.items] == [v2.licence.licence_id]
    ((_cursor, use),) = vault.holder_uses(RESTAURANT)
    assert use == result.items[0].use


def test_insert_with_a_taken_request_id_inserts_nothing(
    database: Database, make_vault: Callable[[Database], Vault], issuer: Actor
) -> None:
    vault = make_vault(database)
    first = vault.issue(issuer, business_licence("dup")).licence
    store = SqlLicenceStore(database)
    clash = replace(first, licence_id=str(first.ident.next_version()), version=2, status_idx=999)
    fresh = replace(
        first, licence_id=str(replace(first.ident, serial=77)), serial=77, status_idx=1000
    )
    event = LicenceEvent(
        first.licence_id, first.lineage, "issue", first.issued_at, JIANGAN_SAMR, "x"
    )
    with pytest.raises(RequestIdsTaken) as err:
        store.insert_issued(
            [IssuedItem(fresh, "new", "h", event), IssuedItem(clash, "dup", "h", event)]
        )
    assert err.value.request_ids == ("dup",)
    assert store.get(fresh.licence_id) is None


def test_status_change_is_compare_and_set(
    database: Database, make_vault: Callable[[Database], Vault], issuer: Actor
) -> None:
    vault = make_vault(database)
    lic = vault.issue(issuer, business_licence()).licence
    event = LicenceEvent(lic.licence_id, lic.lineage, "suspend", lic.issued_at, JIANGAN_SAMR, "x")
    store = vault.store
    store.change_status(
        lic.licence_id, LicenceStatus.VALID, LicenceStatus.SUSPENDED, event, reason="r",
        at=lic.issued_at,
    )  # fmt: skip
    with pytest.raises(FailedPrecondition) as err:
        store.change_status(
            lic.licence_id, LicenceStatus.VALID, LicenceStatus.REVOKED, event, reason="r",
            at=lic.issued_at,
        )  # fmt: skip
    assert err.value.reason == "STATUS_CHANGED"


def test_two_expiry_runs_at_once_expire_each_licence_once(
    database: Database, make_vault: Callable[[Database], Vault], issuer: Actor
) -> None:
    vault = make_vault(database)
    today = vault.today()
    lapsed = [
        vault.issue(
            issuer,
            food_permit(
                f"old-{i}",
                issue_date=today - timedelta(days=90),
                valid_until=today - timedelta(days=1),
            ),
        ).licence.licence_id
        for i in range(6)
    ]
    current = vault.issue(issuer, food_permit("current")).licence.licence_id
    assert [lic.licence_id for lic in vault.store.due_to_expire(today, limit=4)] == sorted(lapsed)[
        :4
    ]
    reports: list[ExpiryReport] = []

    def run() -> None:
        reports.append(vault.expire_due(batch_size=2))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.expired for r in reports) == 6
    assert sum(r.failed for r in reports) == 0
    for licence_id in lapsed:
        assert vault.get(licence_id).status is LicenceStatus.EXPIRED
        assert [e.action for e in vault.history(licence_id)[1]].count("expire") == 1
    assert vault.get(current).status is LicenceStatus.VALID
    assert vault.expire_due().due == 0  # idempotent
    assert vault.store.status_list_state(JIANGAN_SAMR).version == 0  # the list is unchanged
