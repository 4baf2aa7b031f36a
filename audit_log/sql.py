""":class:`SqlLogStorage`: the audit log on SQLite or PostgreSQL (``zhida.db``).

Writes go through one short transaction per batch that first locks the tree
row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
already holds the database write lock), so several processes sharing one
database (``zhida serve --workers N``) sequence into one log without gaps or
duplicates. The tree state is re-read under that lock on every batch: a
process never trusts a cached size another process may have moved on.

Each batch is made durable before :meth:`SqlLogStorage.append` returns:
SQLite commits with ``synchronous=FULL`` (the WAL is fsynced per commit; the
node default ``NORMAL`` would only sync at checkpoints) and PostgreSQL with
``synchronous_commit = on`` whatever the server default. Rows go in bulk:
``executemany`` on SQLite and binary ``COPY`` on PostgreSQL.

Example::

    from audit_log.sql import SqlLogStorage
    from zhida.db import Database

    storage = SqlLogStorage(Database("sqlite:///.zhida/zhida.db"))
    print(storage.tree_head().size)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, cast

from sqlalchemy import Connection, func, insert, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from audit_log.bulk import NodeReader, as_bytes, insert_driver_rows, insert_rows, pg_copy
from audit_log.checkpoint import Checkpoint, CheckpointGuard
from audit_log.compact import CompactRange
from audit_log.errors import TreeStateError
from audit_log.hashes import EMPTY_ROOT, NodeID, flat_id
from audit_log.merkle import consistency_proof
from audit_log.models import TREE_ROW_ID
from audit_log.note import NoteSigner, NoteVerifier
from audit_log.sql_rows import (
    CHECKPOINT,
    COPY_TYPES,
    EVENT,
    EVENT_COLUMNS,
    NODE,
    RAW_EVENTS,
    TREE,
    WITNESS,
    ConnectionReader,
    in_order,
    search_statement,
    stored_event,
    trusted_checkpoint,
    witness_record,
)
from audit_log.storage import (
    EncodedEvent,
    EventQuery,
    ExtraRows,
    SignedCheckpoint,
    StoredEvent,
    TreeHead,
    WitnessRecord,
)
from zhida.db import Database, utcnow
from zhida.db.engine import DetachedConnection, translate_error, translated_errors
from zhida.errors import Aborted

_SQLITE_TREE_STATE = "SELECT state FROM audit_tree WHERE id = ?"
_SQLITE_TREE_UPDATE = (
    "UPDATE audit_tree SET size = ?, root_hash = ?, state = ?, updated_at = ? "
    "WHERE id = ? AND size = ?"
)
# Moves the row only from the tree this process last committed (size and root).
_SQLITE_TREE_MOVE = _SQLITE_TREE_UPDATE + " AND root_hash = ?"


def _grown(
    tree: CompactRange, events: Sequence[EncodedEvent]
) -> tuple[int, list[tuple[int, bytes]], tuple[Any, ...]]:
    """Append ``events`` to ``tree``: the first index, the new nodes, the tree row's UPDATE."""
    first = tree.size
    nodes = [(flat_id(n), n.hash) for e in events for n in tree.append(e.leaf_hash)]
    now = utcnow().replace(tzinfo=None).isoformat(" ", "microseconds")
    return first, nodes, (tree.size, tree.root(), tree.to_bytes(), now, TREE_ROW_ID, first)


class SqlLogStorage:
    """:class:`audit_log.storage.LogStorage` on a :class:`zhida.db.Database`."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._dialect = database.dialect
        self._reader = NodeReader(database)
        self._ensure_tree_row()
        # The SQLite writer's own connection and the tree it last committed (see
        # _append_sqlite); None until the first batch, or after a failure.
        self._writer_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._own: DetachedConnection | None = None
        self._borrowed: Any = None
        self._tree: tuple[CompactRange, bytes] | None = None  # with its root

    def close(self) -> None:
        """Release the writer's and the proof reader's connections (the Database stays open)."""
        with self._writer_lock:
            self._drop_writer()
        self._reader.close()

    # --- writing ---------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A durable write transaction (see the module docstring)."""
        with translated_errors(), self.database.engine.connect() as conn:
            sqlite = self._dialect == "sqlite"
            if sqlite:  # must be set outside a transaction
                conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                    "PRAGMA synchronous=FULL"
                )
            try:
                with conn.begin():
                    if not sqlite:
                        conn.execute(text("SET LOCAL synchronous_commit = on"))
                    yield conn
            finally:
                if sqlite and not conn.invalidated:
                    with suppress(Exception):  # the pool's next user gets the node default
                        conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                            "PRAGMA synchronous=NORMAL"
                        )

    def _ensure_tree_row(self) -> None:
        values = {
            "id": TREE_ROW_ID,
            "size": 0,
            "root_hash": EMPTY_ROOT,
            "state": CompactRange().to_bytes(),
            "updated_at": utcnow(),
        }
        make = pg_insert if self._dialect == "postgresql" else sqlite_insert
        with translated_errors(), self.database.engine.begin() as conn:
            conn.execute(make(TREE).values(**values).on_conflict_do_nothing())

    def _lock_tree(self, conn: Connection) -> CompactRange:
        stmt = select(TREE.c.state).where(TREE.c.id == TREE_ROW_ID)
        if self._dialect == "postgresql":
            stmt = stmt.with_for_update()
        state = conn.execute(stmt).scalar_one_or_none()
        if state is None:
            raise TreeStateError("the audit_tree row is missing")
        return CompactRange.from_bytes(as_bytes(state))

    def append(self, events: Sequence[EncodedEvent], extra: Sequence[ExtraRows] = (), /) -> int:
        if not events:
            raise ValueError("append needs at least one event")
        if self._dialect == "sqlite":
            return self._append_sqlite(events, extra)
        with self._transaction() as conn:
            tree = self._lock_tree(conn)
            first = tree.size
            nodes: list[tuple[int, bytes]] = []
            for encoded in events:
                nodes.extend((flat_id(n), n.hash) for n in tree.append(encoded.leaf_hash))
            rows = [self._event_row(first + i, e) for i, e in enumerate(events)]
            if self._dialect == "postgresql":
                self._copy(conn, rows, nodes)
            else:
                insert_rows(conn, "audit_event", EVENT_COLUMNS, rows)
                insert_rows(conn, "audit_node", ("id", "hash"), nodes)
            for table, columns, values in extra:  # psycopg's marks (SQLite went above)
                marks = ", ".join(["%s"] * len(columns))
                head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
                conn.exec_driver_sql(head, list(values))
            moved = conn.execute(
                update(TREE)
                .where(TREE.c.id == TREE_ROW_ID, TREE.c.size == first)
                .values(
                    size=tree.size,
                    root_hash=tree.root(),
                    state=tree.to_bytes(),
                    updated_at=utcnow(),
                )
            )
            if moved.rowcount != 1:
                raise TreeStateError("the tree moved under its lock")
        return first

    def _append_sqlite(self, events: Sequence[EncodedEvent], extra: Sequence[ExtraRows]) -> int:
        """:meth:`append` on SQLite straight through the driver.

        The SQLAlchemy path's transaction (BEGIN IMMEDIATE, tree checked under
        the lock, rows, tree update, FULL-synchronous commit, all or nothing)
        without its per-statement work, in the writer thread that shares the
        serving loop's GIL (each statement is a GIL release to win back). It
        keeps a connection of its own (``synchronous=FULL`` set once, no pool
        checkout) and the tree it last committed: the UPDATE moves the row only
        from that tree's size and root, else (another process appended) the
        stored tree is read under the lock and the batch recomputed.
        """
        with self._writer_lock:
            driver = self._writer
            try:
                if driver is None:
                    driver = self._writer = self._open_writer()
                return self._append_on(driver, events, extra)
            except sqlite3.Error as error:
                self._drop_writer()
                wrapped = sa_exc.DBAPIError.instance(None, None, error, sqlite3.Error)
                raise (translate_error(wrapped) or wrapped) from error
            except BaseException:
                self._tree = None  # unknown whether the tree moved: read it next time
                raise

    def _open_writer(self) -> sqlite3.Connection:
        own = self.database.detached_sqlite_connection()
        if own is None:  # in-memory: the pool's one connection, kept checked out
            self._borrowed = self.database.engine.raw_connection()
            driver = cast(sqlite3.Connection, self._borrowed.driver_connection)
        else:
            self._own, driver = own, own.driver
        driver.execute("PRAGMA synchronous=FULL")  # the WAL fsynced at every commit
        return driver

    def _drop_writer(self) -> None:
        self._tree = None
        driver, self._writer = self._writer, None
        own, self._own = self._own, None
        borrowed, self._borrowed = self._borrowed, None
        if own is not None:
            own.close()
        if borrowed is not None:  # back to the pool (an in-memory database lives on it)
            with suppress(Exception):
                driver.execute("PRAGMA synchronous=NORMAL")  # type: ignore[union-attr]
            borrowed.close()

    def _append_on(
        self, driver: sqlite3.Connection, events: Sequence[EncodedEvent], extra: Sequence[ExtraRows]
    ) -> int:
        driver.execute("BEGIN IMMEDIATE")
        try:
            known, self._tree = self._tree, None  # grown in place: kept only once committed
            tree = known[0] if known is not None else self._read_tree(driver)
            first, nodes, update = _grown(tree, events)
            if known is not None:
                moved = driver.execute(_SQLITE_TREE_MOVE, (*update, known[1]))
                if moved.rowcount != 1:  # another process appended: start from its tree
                    known, tree = None, self._read_tree(driver)
                    first, nodes, update = _grown(tree, events)
            if known is None:
                moved = driver.execute(_SQLITE_TREE_UPDATE, update)
            if moved.rowcount != 1:
                raise TreeStateError("the tree moved under its lock")
            rows = [self._event_row(first + i, e) for i, e in enumerate(events)]
            insert_driver_rows(driver, "audit_event", EVENT_COLUMNS, rows)
            insert_driver_rows(driver, "audit_node", ("id", "hash"), nodes)
            for table, columns, values in extra:
                insert_driver_rows(driver, table, columns, values)
            driver.execute("COMMIT")
        except BaseException:
            with suppress(Exception):
                driver.execute("ROLLBACK")
            raise
        self._tree = (tree, update[1])
        return first

    @staticmethod
    def _read_tree(driver: sqlite3.Connection) -> CompactRange:
        row = driver.execute(_SQLITE_TREE_STATE, (TREE_ROW_ID,)).fetchone()
        if row is None:
            raise TreeStateError("the audit_tree row is missing")
        return CompactRange.from_bytes(as_bytes(row[0]))

    def _event_row(self, index: int, encoded: EncodedEvent) -> tuple[Any, ...]:
        e = encoded.event
        if self._dialect == "sqlite":
            # What UTCDateTime binds on SQLite (naive UTC, always with microseconds;
            # a test checks), several times faster than going through the type.
            time: Any = e.time.replace(tzinfo=None).isoformat(" ", "microseconds")
        else:
            time = e.time
        return (
            index, encoded.leaf, time, e.action.value, e.outcome.value,
            e.organisation, e.subject, e.resource, e.licence_id, e.holder_ref,
        )  # fmt: skip

    @staticmethod
    def _copy(
        conn: Connection, rows: list[tuple[Any, ...]], nodes: list[tuple[int, bytes]]
    ) -> None:
        pg_copy(conn, "audit_event", EVENT_COLUMNS, COPY_TYPES, rows)
        pg_copy(conn, "audit_node", ("id", "hash"), ("int8", "bytea"), nodes)

    # --- reading ---------------------------------------------------------

    def tree_head(self) -> TreeHead:
        with translated_errors(), self.database.engine.connect() as conn:
            row = conn.execute(
                select(TREE.c.size, TREE.c.root_hash).where(TREE.c.id == TREE_ROW_ID)
            ).one_or_none()
        if row is None:
            raise TreeStateError("the audit_tree row is missing")
        return TreeHead(row.size, as_bytes(row.root_hash))

    def get_nodes(self, ids: Sequence[NodeID], /) -> list[bytes]:
        flat = [flat_id(n) for n in ids]
        return in_order(ids, flat, self.node_hashes(flat))

    def node_hashes(self, flat_ids: Sequence[int], /) -> dict[int, bytes]:
        return self._reader.fetch(flat_ids)

    def node_block(self, first: int, end: int, /) -> dict[int, bytes]:
        stmt = select(NODE.c.id, NODE.c.hash).where(NODE.c.id >= first, NODE.c.id < end)
        with translated_errors(), self.database.engine.connect() as conn:
            return {row[0]: as_bytes(row[1]) for row in conn.execute(stmt)}

    def read_events(self, start: int, end: int, /) -> list[StoredEvent]:
        stmt = select(EVENT).where(EVENT.c.idx >= start, EVENT.c.idx < end).order_by(EVENT.c.idx)
        with translated_errors(), self.database.engine.connect() as conn:
            try:
                return [stored_event(row) for row in conn.execute(stmt)]
            except ValueError:
                # A hand-edited time that no longer parses: read the columns
                # untyped, so verification reports that row instead of failing.
                rows = conn.execute(text(RAW_EVENTS), {"start": start, "end": end})
                return [stored_event(row, self._parse_time(row.time)) for row in rows]

    def _parse_time(self, value: Any) -> Any:
        """The stored time as the column type reads it, or the raw value if it cannot."""
        dialect = self.database.engine.dialect
        read = EVENT.c.time.type.dialect_impl(dialect).result_processor(dialect, None)
        try:
            return read(value) if read is not None else value
        except ValueError:
            return value

    def search(self, query: EventQuery, /) -> list[StoredEvent]:
        with translated_errors(), self.database.engine.connect() as conn:
            return [stored_event(row) for row in conn.execute(search_statement(query))]

    def count_events(self) -> int:
        with translated_errors(), self.database.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(EVENT)).scalar_one())

    # --- checkpoints -----------------------------------------------------

    def latest_checkpoint(self) -> str | None:
        stmt = select(CHECKPOINT.c.note).order_by(CHECKPOINT.c.size.desc()).limit(1)
        with translated_errors(), self.database.engine.connect() as conn:
            note = conn.execute(stmt).scalar_one_or_none()
        return None if note is None else str(note)

    def publish_checkpoint(
        self, origin: str, signer: NoteSigner, verifier: NoteVerifier, /
    ) -> tuple[SignedCheckpoint, bool]:
        with self._transaction() as conn:
            tree = self._lock_tree(conn)
            new = Checkpoint(origin, tree.size, tree.root())
            last_row = conn.execute(
                select(CHECKPOINT).order_by(CHECKPOINT.c.size.desc()).limit(1)
            ).one_or_none()
            last = None if last_row is None else trusted_checkpoint(last_row, verifier, origin)
            guard = CheckpointGuard(last)
            if last is not None and last.size == new.size:
                guard.check(new, [])  # same size: same root, or a fork
                return SignedCheckpoint(last, str(last_row.note)), False  # type: ignore[union-attr]
            proof: list[bytes] = []
            if last is not None and last.size > 0:
                proof = consistency_proof(last.size, new.size, ConnectionReader(conn))
            note, _ = guard.sign(new, proof, [signer])
            conn.execute(
                insert(CHECKPOINT).values(
                    size=new.size,
                    origin=origin,
                    root_hash=new.root_hash,
                    note=note,
                    created_at=utcnow(),
                )
            )
        return SignedCheckpoint(new, note), True

    # --- witnessing ------------------------------------------------------

    def update_witness(
        self, origin: str, decide: Callable[[WitnessRecord | None], WitnessRecord], /
    ) -> WitnessRecord:
        try:
            with self._transaction() as conn:
                stmt = select(WITNESS).where(WITNESS.c.origin == origin)
                if self._dialect == "postgresql":
                    stmt = stmt.with_for_update()
                row = conn.execute(stmt).one_or_none()
                current = None if row is None else witness_record(row)
                new = decide(current)
                values = {
                    "verifier_key": new.verifier_key, "size": new.size,
                    "root_hash": new.root_hash, "note": new.note, "updated_at": utcnow(),
                }  # fmt: skip
                if current is None:
                    conn.execute(insert(WITNESS).values(origin=origin, **values))
                else:
                    conn.execute(update(WITNESS).where(WITNESS.c.origin == origin).values(values))
        except sa_exc.IntegrityError:  # a concurrent first cosignature for this origin
            raise Aborted(
                f"concurrent cosignature of {origin}, retry", reason="WITNESS_CONFLICT"
            ) from None
        return new
