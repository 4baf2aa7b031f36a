"""The SQL :class:`~exchange.repository.ExchangeRepository` (SQLite and PostgreSQL).

Tables are in :mod:`exchange.models.requests`. Every public method is one
transaction: writes through :meth:`zhida.db.Database.session` (BEGIN IMMEDIATE
on SQLite), reads through :meth:`zhida.db.Database.read` (a deferred snapshot
that neither waits for nor blocks a writer).

How the contract is kept:

* **Compare-and-set.** A decision is ``UPDATE … WHERE request_id = :id AND
  state = :expected``; no row updated means the request is gone (``NotFound``)
  or moved on (``Aborted`` ``REQUEST_CHANGED``), and the transaction — with
  the grants it would have written — rolls back. Grants likewise
  (``GRANT_CHANGED``). On PostgreSQL a concurrent writer waits for the row
  lock and then re-reads the row, so exactly one of two racing decisions wins.
* **One transaction** for a request and its grants (insert or overwrite by id).
* **Grant versions.** A transaction that writes grants first bumps the single
  ``exchange_feed`` row and stamps every grant it writes with the new
  version. Writers queue on that row (SQLite: on the database lock), so
  versions commit in increasing order, a reader of
  :meth:`SqlExchangeRepository.grants_changed_since` never skips a write, and
  every grant writer takes its locks in the same order (no deadlocks).

Example::

    from exchange.sql import SqlExchangeRepository
    from zhida.db import Database

    repo = SqlExchangeRepository(Database("sqlite:///.zhida/zhida.db"))
    for request in repo.pending_requests("114201000000120016"):
        print(request.id, request.resource_code, request.purpose)
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Table, exc, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from exchange.model import (
    Grant,
    GrantState,
    Period,
    RequestDecision,
    RequestState,
    ShareRequest,
)
from exchange.models.requests import FEED_ROW_ID, ExchangeFeedRow, GrantRow, ShareRequestRow
from exchange.repository import second_active_grant
from zhida.db import Database
from zhida.errors import Aborted, AlreadyExists, NotFound

__all__ = ["SqlExchangeRepository"]

_Q = cast(Table, ShareRequestRow.__table__)
_G = cast(Table, GrantRow.__table__)
_F = cast(Table, ExchangeFeedRow.__table__)
PAGE = 1000


def _dump(items: Sequence[str]) -> str:
    return json.dumps(list(items), ensure_ascii=False)


def _load(text: str | None) -> list[str]:
    return [] if not text else [str(v) for v in json.loads(text)]


def _request_values(r: ShareRequest) -> dict[str, Any]:
    d = r.decision
    return {
        "request_id": r.id,
        "requester_org": r.requester_org,
        "requester_region": r.requester_region,
        "requested_by": r.requested_by,
        "resource_code": r.resource_code,
        "provider_org": r.provider_org,
        "items": _dump(r.items),
        "purpose": r.purpose,
        "legal_basis": r.legal_basis,
        "period_start": r.period.start,
        "period_end": r.period.end,
        "expected_volume": r.expected_volume,
        "state": r.state.value,
        "submitted_at": r.submitted_at,
        "updated_at": r.updated_at,
        "withdrawn_at": r.withdrawn_at,
        "decided_by": None if d is None else d.decided_by,
        "decided_at": None if d is None else d.decided_at,
        "approved": None if d is None else d.approved,
        "decision_reason": None if d is None else d.reason,
        "items_granted": None if d is None else _dump(sorted(d.items_granted)),
        "until_granted": None if d is None else d.until_granted,
        "grant_id": None if d is None else d.grant_id,
    }


def _request(row: Any) -> ShareRequest:
    decision = None
    if row.decided_at is not None:
        decision = RequestDecision(
            decided_by=row.decided_by or "",
            decided_at=row.decided_at,
            approved=bool(row.approved),
            reason=row.decision_reason or "",
            items_granted=frozenset(_load(row.items_granted)),
            until_granted=row.until_granted,
            grant_id=row.grant_id,
        )
    return ShareRequest(
        id=row.request_id,
        requester_org=row.requester_org,
        requester_region=row.requester_region,
        requested_by=row.requested_by,
        resource_code=row.resource_code,
        provider_org=row.provider_org,
        items=tuple(_load(row.items)),
        purpose=row.purpose,
        legal_basis=row.legal_basis,
        period=Period(row.period_start, row.period_end),
        expected_volume=int(row.expected_volume),
        state=RequestState(row.state),
        submitted_at=row.submitted_at,
        updated_at=row.updated_at,
        decision=decision,
        withdrawn_at=row.withdrawn_at,
    )


def _grant_values(g: Grant, version: int) -> dict[str, Any]:
    return {
        "grant_id": g.id,
        "request_id": g.request_id,
        "requester_org": g.requester_org,
        "provider_org": g.provider_org,
        "resource_code": g.resource_code,
        "items": _dump(sorted(g.items)),
        "valid_from": g.valid_from,
        "valid_until": g.valid_until,
        "purpose": g.purpose,
        "created_at": g.created_at,
        "rate_limit_per_minute": g.rate_limit_per_minute,
        "state": g.state.value,
        "revoked_at": g.revoked_at,
        "revoked_by": g.revoked_by,
        "revoked_reason": g.revoked_reason,
        "version": version,
    }


def _grant(row: Any) -> Grant:
    return Grant(
        id=row.grant_id,
        request_id=row.request_id,
        requester_org=row.requester_org,
        provider_org=row.provider_org,
        resource_code=row.resource_code,
        items=frozenset(_load(row.items)),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        purpose=row.purpose,
        created_at=row.created_at,
        rate_limit_per_minute=row.rate_limit_per_minute,
        state=GrantState(row.state),
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by or "",
        revoked_reason=row.revoked_reason or "",
    )


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _request_exists(request_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"request {request_id} exists",
        reason="REQUEST_EXISTS",
        metadata={"request_id": request_id},
    )


def _grant_exists(grant_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"grant {grant_id} exists", reason="GRANT_EXISTS", metadata={"grant_id": grant_id}
    )


_GRANT_COLUMNS = [c for c in _G.c if c.name != "seq"]


def _compare_and_set(
    s: Session, key: Any, row_id: str, expected: str, values: dict[str, Any]
) -> None:
    """Update the row whose ``key`` is ``row_id`` only while its state is ``expected``.

    NotFound (``REQUEST_NOT_FOUND`` / ``GRANT_NOT_FOUND``) for an unknown id,
    Aborted (``REQUEST_CHANGED`` / ``GRANT_CHANGED``) when the state moved on.
    """
    table = key.table
    done = s.execute(update(table).where(key == row_id, table.c.state == expected).values(**values))
    if _rowcount(done) > 0:
        return
    kind = "request" if table is _Q else "grant"
    meta = {f"{kind}_id": row_id}
    state = s.scalar(select(table.c.state).where(key == row_id))
    if state is None:
        raise NotFound(
            f"{kind} {row_id} not found", reason=f"{kind.upper()}_NOT_FOUND", metadata=meta
        )
    raise Aborted(
        f"{kind} {row_id} changed concurrently (now {state})",
        reason=f"{kind.upper()}_CHANGED",
        metadata=meta,
    )


class SqlExchangeRepository:
    """Share requests and grants in a :class:`zhida.db.Database`; thread-safe."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # -- internals ----------------------------------------------------------------------
    @staticmethod
    def _bump(s: Session) -> int:
        """Take the next grant version (locks the feed row until the transaction ends)."""
        stmt = (
            update(_F)
            .where(_F.c.id == FEED_ROW_ID)
            .values(grant_version=_F.c.grant_version + 1)
            .returning(_F.c.grant_version)
        )
        return int(s.execute(stmt).scalar_one())

    @staticmethod
    def _refuse_second_active(s: Session, grants: Sequence[Grant]) -> None:
        """Aborted when a live ACTIVE grant outside ``grants`` would stay beside a new one.

        Called with the feed row locked, so two writers (other threads or
        worker processes, whose grant index may lag) cannot both pass.
        """
        ours = [g.id for g in grants]
        for grant in grants:
            if grant.state is not GrantState.ACTIVE:
                continue
            other = s.scalar(
                select(_G.c.grant_id).where(
                    _G.c.requester_org == grant.requester_org,
                    _G.c.resource_code == grant.resource_code,
                    _G.c.state == GrantState.ACTIVE.value,
                    _G.c.valid_until > grant.created_at,
                    _G.c.grant_id.not_in(ours),
                )
            )
            if other is not None:
                raise second_active_grant(grant, other)

    @classmethod
    def _upsert_grants(cls, s: Session, grants: Sequence[Grant], version: int) -> None:
        cls._refuse_second_active(s, grants)
        for grant in grants:
            values = _grant_values(grant, version)
            done = s.execute(update(_G).where(_G.c.grant_id == grant.id).values(**values))
            if _rowcount(done) == 0:
                s.execute(insert(_G).values(**values))

    def _write(self, s: Session, grants: Sequence[Grant]) -> None:
        if grants:
            self._upsert_grants(s, grants, self._bump(s))

    # -- requests -----------------------------------------------------------------------
    def insert_request(self, request: ShareRequest, grants: Sequence[Grant] = ()) -> None:
        try:
            with self.database.session() as s:
                version = self._bump(s) if grants else 0
                taken = s.scalar(select(_Q.c.request_id).where(_Q.c.request_id == request.id))
                if taken is not None:
                    raise _request_exists(request.id)
                s.execute(insert(_Q).values(**_request_values(request)))
                self._upsert_grants(s, grants, version)
        except exc.IntegrityError as error:  # the same id filed concurrently
            raise _request_exists(request.id) from error

    def get_request(self, request_id: str) -> ShareRequest | None:
        with self.database.read() as conn:
            row = conn.execute(select(_Q).where(_Q.c.request_id == request_id)).first()
        return None if row is None else _request(row)

    def save_request(
        self,
        request: ShareRequest,
        *,
        expected_state: RequestState,
        grants: Sequence[Grant] = (),
    ) -> None:
        with self.database.session() as s:
            version = self._bump(s) if grants else 0  # the feed first: one lock order
            values = _request_values(request)
            del values["request_id"]
            _compare_and_set(s, _Q.c.request_id, request.id, expected_state.value, values)
            self._upsert_grants(s, grants, version)

    def pending_requests(self, provider_org: str, limit: int = 100) -> list[ShareRequest]:
        stmt = (
            select(_Q)
            .where(_Q.c.provider_org == provider_org, _Q.c.state == RequestState.SUBMITTED.value)
            .order_by(_Q.c.submitted_at, _Q.c.request_id)
            .limit(limit)
        )
        with self.database.read() as conn:
            return [_request(row) for row in conn.execute(stmt)]

    def requests_of(self, requester_org: str) -> list[ShareRequest]:
        stmt = (
            select(_Q)
            .where(_Q.c.requester_org == requester_org)
            .order_by(_Q.c.submitted_at, _Q.c.request_id)
        )
        with self.database.read() as conn:
            return [_request(row) for row in conn.execute(stmt)]

    # -- grants -------------------------------------------------------------------------
    def insert_grant(self, grant: Grant) -> None:
        try:
            with self.database.session() as s:
                version = self._bump(s)
                taken = s.scalar(select(_G.c.seq).where(_G.c.grant_id == grant.id))
                if taken is not None:
                    raise _grant_exists(grant.id)
                self._refuse_second_active(s, [grant])
                s.execute(insert(_G).values(**_grant_values(grant, version)))
        except exc.IntegrityError as error:  # a writer outside the feed lock; never ours
            raise _grant_exists(grant.id) from error

    def get_grant(self, grant_id: str) -> Grant | None:
        with self.database.read() as conn:
            row = conn.execute(select(*_GRANT_COLUMNS).where(_G.c.grant_id == grant_id)).first()
        return None if row is None else _grant(row)

    def save_grant(self, grant: Grant, *, expected_state: GrantState) -> None:
        with self.database.session() as s:
            values = _grant_values(grant, self._bump(s))
            self._refuse_second_active(s, [grant])
            del values["grant_id"]
            _compare_and_set(s, _G.c.grant_id, grant.id, expected_state.value, values)

    def iter_grants(self, state: GrantState | None = None) -> Iterator[Grant]:
        last = 0
        while True:
            stmt = select(_G.c.seq, *_GRANT_COLUMNS).where(_G.c.seq > last)
            if state is not None:
                stmt = stmt.where(_G.c.state == state.value)
            with self.database.read() as conn:
                rows = conn.execute(stmt.order_by(_G.c.seq).limit(PAGE)).all()
            yield from (_grant(row) for row in rows)
            if len(rows) < PAGE:
                return
            last = rows[-1].seq

    def grants_of(self, org: str, *, as_provider: bool = False) -> list[Grant]:
        column = _G.c.provider_org if as_provider else _G.c.requester_org
        stmt = select(*_GRANT_COLUMNS).where(column == org).order_by(_G.c.seq)
        with self.database.read() as conn:
            return [_grant(row) for row in conn.execute(stmt)]

    def grant_version(self) -> int:
        with self.database.read() as conn:
            return self._version(conn)

    @staticmethod
    def _version(conn: Connection) -> int:
        return int(conn.scalar(select(_F.c.grant_version).where(_F.c.id == FEED_ROW_ID)) or 0)

    def grants_changed_since(self, version: int) -> tuple[list[Grant], int]:
        stmt = (
            select(*_GRANT_COLUMNS).where(_G.c.version > version).order_by(_G.c.version, _G.c.seq)
        )
        with self.database.read() as conn:
            rows = conn.execute(stmt).all()
        newest = max((int(row.version) for row in rows), default=version)
        return [_grant(row) for row in rows], max(version, newest)
