"""Durable positions of the federation's background work, as rows of ``node_meta``.

The catalogue push and pull, the licence-index push and the witnessing each
resume where they stopped after a restart: their cursors (and the last
cosigned checkpoint) live in the node's own database, shared by its worker
processes, under keys ``federation.<name>``.

Example::

    state = SyncState(database)
    cursor = state.get_int("catalog.pushed")      # 0 the first time
    state.put("catalog.pushed", str(cursor + 10))
"""

from __future__ import annotations

from sqlalchemy import select

from zhida.db import Database
from zhida.db.models import NodeMeta

__all__ = ["SyncState"]

PREFIX = "federation."


class SyncState:
    """Named values of the federation's background work (``node_meta`` rows)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def get(self, name: str) -> str | None:
        with self.database.read() as conn:
            row = conn.execute(select(NodeMeta.value).where(NodeMeta.key == PREFIX + name)).first()
        return None if row is None else str(row[0])

    def get_int(self, name: str, default: int = 0) -> int:
        value = self.get(name)
        return default if value is None else int(value)

    def put(self, name: str, value: str) -> None:
        with self.database.session() as s:
            s.merge(NodeMeta(key=PREFIX + name, value=value))
