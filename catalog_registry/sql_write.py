"""The writing half of :class:`catalog_registry.sql.SqlCatalogRepository`: rows, postings, feed.

Every function runs inside the caller's session (one transaction). A write
first takes its change sequences from the single ``catalog_feed`` row
(:func:`take_sequences`): writers queue on that row lock, so sequences become
visible in order and every writer locks rows in the same order (no
deadlocks). Bulk rows (postings, versions, changes) go through the driver's
fast paths, ``executemany`` on SQLite and ``COPY`` on PostgreSQL.

Example::

    with database.session() as s:
        first = take_sequences(s, len(resources))
        write_new(s, resources, [(first + i, None, None) for i in range(len(resources))])
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, and_, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from catalog_registry.codec import code_key, resource_from_json, resource_to_json
from catalog_registry.model import NegativeEntry, Resource
from catalog_registry.models import (
    FEED_ROW_ID,
    ChangeRow,
    FeedRow,
    GramRow,
    NegativeEntryRow,
    PostingRow,
    ResourceRow,
    ResourceVersionRow,
)
from catalog_registry.sql_filters import gram_key
from catalog_registry.text import search_grams
from zhida.errors import Aborted, NotFound

R = cast(Table, ResourceRow.__table__)
V = cast(Table, ResourceVersionRow.__table__)
C = cast(Table, ChangeRow.__table__)
F = cast(Table, FeedRow.__table__)
G = cast(Table, GramRow.__table__)
P = cast(Table, PostingRow.__table__)
N = cast(Table, NegativeEntryRow.__table__)
Origin = tuple[int, str | None, int | None]  # (sequence, origin region, origin sequence)


def current(*columns: Any) -> Select[Any]:
    """SELECT [columns,] data of the current version, joined on (code_key, version)."""
    return (
        select(*columns, V.c.data)
        .join(V, and_(V.c.code_key == R.c.code_key, V.c.version == R.c.version))
        .select_from(R)
    )


def take_sequences(s: Session, count: int) -> int:
    """Reserve ``count`` change sequences (locks the feed row); return the first."""
    last = s.execute(
        update(F)
        .where(F.c.id == FEED_ROW_ID)
        .values(last_sequence=F.c.last_sequence + count)
        .returning(F.c.last_sequence)
    ).scalar_one()
    return int(last) - count + 1


def bump_negative_version(s: Session) -> None:
    """Mark the negative list changed (locks the feed row, as resource writes do)."""
    s.execute(
        update(F).where(F.c.id == FEED_ROW_ID).values(negative_version=F.c.negative_version + 1)
    )


def items_key(item_names: Sequence[str]) -> str:
    """The unique key of an entry's item-name tuple (SHA-256 of its JSON)."""
    raw = json.dumps(list(item_names), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()


def insert_negative(s: Session, key: int, entries: Sequence[NegativeEntry]) -> None:
    """Insert entries of resource ``key`` (the caller bumped the negative version)."""
    for entry in entries:
        s.execute(
            insert(N).values(
                code_key=key,
                items_key=items_key(entry.item_names),
                item_names=json.dumps(list(entry.item_names), ensure_ascii=False),
                legal_basis=entry.legal_basis,
                added_by=entry.added_by,
                added_at=entry.added_at,
            )
        )


def replace_negative(s: Session, key: int, entries: Sequence[NegativeEntry]) -> None:
    """The entries of resource ``key`` become ``entries`` (an import from another node)."""
    bump_negative_version(s)
    s.execute(delete(N).where(N.c.code_key == key))
    insert_negative(s, key, entries)


def add_change(s: Session, key: int, version: int, change: Origin) -> None:
    """One feed row for an existing version (a change of the resource's negative entries)."""
    seq, region, origin = change
    s.execute(
        insert(C).values(
            sequence=seq, code_key=key, version=version, origin_region=region,
            origin_sequence=origin,
        )
    )  # fmt: skip


def entries_changed(s: Session, key: int) -> None:
    """The entries travel with the resource: a change of its current version, if stored."""
    version = s.scalar(select(R.c.version).where(R.c.code_key == key))
    if version is not None:
        add_change(s, key, version, (take_sequences(s, 1), None, None))


def imported(s: Session, origin_region: str, origin_sequence: int) -> bool:
    found = s.scalar(
        select(C.c.sequence).where(
            C.c.origin_region == origin_region, C.c.origin_sequence == origin_sequence
        )
    )
    return found is not None


def grams(resource: Resource) -> set[str]:
    """The stored keyword grams of a resource."""
    return {gram_key(g) for g in search_grams(resource)}


def write_new(s: Session, resources: Sequence[Resource], changes: Sequence[Origin]) -> None:
    """Insert new resources: current rows, versions, changes, postings, frequencies."""
    conn = s.connection()
    _bulk(conn, R.name, ("code_key", "version", "status", "provider_code", "region_code",
                         "level", "share_type"),
          ((code_key(r.code), r.version, *_filter_values(r)) for r in resources))  # fmt: skip
    _add_versions(conn, resources, changes)
    by_gram: dict[str, list[int]] = {}
    for r in resources:
        key = code_key(r.code)
        for gram in grams(r):
            by_gram.setdefault(gram, []).append(key)
    ordered = sorted(by_gram)  # B-tree inserts in key order
    _bulk(conn, P.name, ("gram", "code_key"),
          ((g, k) for g in ordered for k in sorted(by_gram[g])))  # fmt: skip
    _adjust_df(s, {g: len(by_gram[g]) for g in ordered})


def write_version(s: Session, resource: Resource, expected_version: int, change: Origin) -> None:
    """Store the next version if the current one is ``expected_version`` (compare-and-set)."""
    key = code_key(resource.code)
    row = s.execute(current(R.c.version).where(R.c.code_key == key)).first()
    if row is None:
        raise NotFound(
            f"resource {resource.key} not found",
            reason="RESOURCE_NOT_FOUND",
            metadata={"code": resource.key},
        )
    current_version, data = row[0], row[1]
    if current_version != expected_version or resource.version <= current_version:
        raise Aborted(
            f"resource {resource.key} is at version {current_version}, "
            f"not {expected_version} (or the new version {resource.version} does not follow)",
            reason="VERSION_CONFLICT",
            metadata={"code": resource.key, "current_version": str(current_version)},
        )
    status, provider, region, level, share = _filter_values(resource)
    moved = s.execute(
        update(R)
        .where(R.c.code_key == key, R.c.version == expected_version)
        .values(version=resource.version, status=status, provider_code=provider,
                region_code=region, level=level, share_type=share)
    )  # fmt: skip
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise Aborted(
            f"resource {resource.key} changed meanwhile",
            reason="VERSION_CONFLICT",
            metadata={"code": resource.key},
        )
    conn = s.connection()
    _add_versions(conn, [resource], [change])
    old, new = grams(resource_from_json(data)), grams(resource)
    gone, added = sorted(old - new), sorted(new - old)
    if gone:
        s.execute(delete(P).where(P.c.code_key == key, P.c.gram.in_(gone)))
    _bulk(conn, P.name, ("gram", "code_key"), [(g, key) for g in added])
    _adjust_df(s, {**dict.fromkeys(added, 1), **dict.fromkeys(gone, -1)})


def _add_versions(
    conn: Connection, resources: Sequence[Resource], changes: Sequence[Origin]
) -> None:
    _bulk(conn, V.name, ("code_key", "version", "data"),
          ((code_key(r.code), r.version, resource_to_json(r)) for r in resources))  # fmt: skip
    _bulk(conn, C.name, ("sequence", "code_key", "version", "origin_region", "origin_sequence"),
          ((seq, code_key(r.code), r.version, region, origin)
           for r, (seq, region, origin) in zip(resources, changes, strict=True)))  # fmt: skip


def _filter_values(r: Resource) -> tuple[str, str, str, int, str]:
    return (r.status.value, r.provider_code, r.region_code, int(r.level), r.share_type.value)


def _bulk(
    conn: Connection, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> None:
    """Insert many rows with the driver's fast path, inside the connection's transaction.

    ``table`` and ``columns`` are constants of this module, never user input.
    """
    raw: Any = conn.connection.driver_connection
    names = ", ".join(columns)
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" * len(columns))
        raw.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)  # noqa: S608
        return
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _adjust_df(s: Session, deltas: Mapping[str, int]) -> None:
    """Add ``deltas`` to the grams' document frequencies (new grams start at 0)."""
    rows = [{"gram": g, "df": d} for g, d in sorted(deltas.items()) if d]
    if not rows:
        return
    dialect = s.get_bind().dialect.name
    ins = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(G)
    stmt = ins.on_conflict_do_update(
        index_elements=[G.c.gram], set_={"df": G.c.df + ins.excluded.df}
    )
    for i in range(0, len(rows), 1000):
        s.execute(stmt, rows[i : i + 1000])
