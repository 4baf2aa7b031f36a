"""The expiry job's queries on :class:`~licence_vault.sql.SqlLicenceStore`.

:meth:`LifecycleQueries.due_to_expire` pages through the licences stored
valid whose validity ended, in identifier order (the index on ``(status,
valid_until)`` finds them; each page continues after the last identifier);
:meth:`LifecycleQueries.expire` stores a page in one durable
transaction, each licence a compare-and-set on ``valid``.

Example::

    due = store.due_to_expire(date.today(), limit=200)
    store.expire(events, at=now)           # ids of the licences it expired
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Table, insert, select, update
from sqlalchemy.engine import Connection

from licence_vault.model import Licence, LicenceEvent, LicenceStatus
from licence_vault.models import LicenceEventRow, LicenceRow
from licence_vault.sql_rows import event_values, licence_from_row

__all__ = ["LifecycleQueries"]

_L = cast(Table, LicenceRow.__table__)
_E = cast(Table, LicenceEventRow.__table__)
_VALID = LicenceStatus.VALID.value


class LifecycleQueries(ABC):
    """Expiry queries; :class:`~licence_vault.sql.SqlLicenceStore` supplies ``_tx``."""

    @abstractmethod
    def _tx(self, *, durable: bool | None = None) -> AbstractContextManager[Connection]:
        """One transaction, durable on request (the store's own)."""

    def due_to_expire(self, today: date, *, after: str = "", limit: int = 200) -> list[Licence]:
        stmt = (
            select(_L)
            .where(
                _L.c.licence_id > after,
                _L.c.status == _VALID,
                _L.c.valid_until.is_not(None),
                _L.c.valid_until < today,
            )
            .order_by(_L.c.licence_id)
            .limit(limit)
        )
        with self._tx() as s:
            rows = s.execute(stmt).all()
        return [licence_from_row(r) for r in rows]

    def expire(self, events: Sequence[LicenceEvent], *, at: datetime) -> list[str]:
        if not events:
            return []
        done: list[LicenceEvent] = []
        with self._tx(durable=True) as s:
            # identifier order: two runs at once lock their rows in the same order
            for event in sorted(events, key=lambda e: e.licence_id):
                result: Any = s.execute(
                    update(_L)
                    .where(_L.c.licence_id == event.licence_id, _L.c.status == _VALID)
                    .values(
                        status=LicenceStatus.EXPIRED.value,
                        status_reason=event.reason,
                        status_changed_at=at,
                    )
                )
                if int(cast(CursorResult[Any], result).rowcount) == 1:
                    done.append(event)
            if done:
                s.execute(insert(_E), [event_values(e) for e in done])
        # The status-list version is left alone: expired and valid share the list
        # value 0 (see licence_vault.model), so the signed list does not change.
        return [e.licence_id for e in done]
