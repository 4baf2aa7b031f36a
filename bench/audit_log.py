"""Benchmark 2 (issue 6): durable audit-log appends and inclusion-proof latency.

Appends: ``CONCURRENCY`` asyncio callers each build an event and await
``AuditLog.append_async`` back to back (event construction, canonical
encoding, group commit, durable commit: ``synchronous=FULL`` on SQLite,
``synchronous_commit=on`` on PostgreSQL), on a fresh SQLite file and a fresh
PostgreSQL database. Baseline in the same run: the same callers with
``max_batch=1``, i.e. one transaction (one fsync) per event. Anchor for
context: Tessera's ~2,900 entries/s on a 12-core POSIX machine.

Proofs: the node hashes of a ``PROOF_LEAVES``-entry tree are bulk-loaded
(computed with ``CompactRange``, inserted in one transaction; the proofs read
nothing else) into SQLite and PostgreSQL, then ``AuditLog.inclusion_proof``
is timed for random leaves against that size, in-process (no gRPC).

Targets: >= 10,000 durable appends/s on each database; proof p99 <= 1 ms.
PostgreSQL comes from ``ZHIDA_BENCH_PG_URL``, else ``ZHIDA_TEST_PG_URL``,
else ``postgresql://postgres@127.0.0.1:5432/postgres``; if none answers, the
PostgreSQL figures are reported as missing and the target as not met.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from audit_log.compact import CompactRange
from audit_log.events import Action, AuditEvent
from audit_log.hashes import flat_id, leaf_hash
from audit_log.keys import load_audit_keys
from audit_log.log import AuditLog
from audit_log.sql import SqlLogStorage
from bench.load import LoadStats, percentile, run_load
from bench.procs import pg_database
from zhida.db import Database
from zhida.db.migrate import upgrade

SECONDS = float(os.environ.get("ZHIDA_BENCH_SECONDS", "3"))
CONCURRENCY = 2048
BASELINE_CONCURRENCY = 64
PROOF_LEAVES = int(os.environ.get("ZHIDA_BENCH_AUDIT_LEAVES", "1000000"))
PROOF_SAMPLES = 5000
TARGET_APPENDS = 10_000
TARGET_PROOF_P99_MS = 1.0
ORIGIN = "zhida.420102/bench"


class _Events:
    """Varied events, built on demand by the callers (construction is measured)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> AuditEvent:
        self.n += 1
        i = self.n
        return AuditEvent(
            action=Action.LICENCE_FETCH,
            time=datetime.now(UTC),
            organisation="114201000000301708",
            role="application",
            subject=f"portal-{i % 50}",
            resource=f"R{i % 1000:05d}",
            licence_id=f"1.2.156.3005.2.11100000000013127D001.11420100MB1234567X.{i:08d}.001.K",
            holder_ref=f"{(i * 2654435761) % (1 << 256):064x}",
            purpose="开办餐馆",
            legal_basis="《优化营商环境条例》第三十五条",
            node=ORIGIN,
            trace_id=f"{i:032x}",
        )


def _open_log(url: str, keys_dir: Path, **kwargs: Any) -> AuditLog:
    keys = load_audit_keys(keys_dir, ORIGIN, create=True)
    return AuditLog(SqlLogStorage(Database(url, pool_size=4)), keys, **kwargs)


def _close(log: AuditLog) -> None:
    log.close()
    db = getattr(log.storage, "database", None)
    if isinstance(db, Database):
        db.dispose()


def _append_load(log: AuditLog, concurrency: int, seconds: float) -> LoadStats:
    events = _Events()

    async def call() -> None:
        await log.append_async(events())

    return asyncio.run(run_load(call, concurrency=concurrency, seconds=seconds, warmup=0.3))


def _appends(url: str, keys_dir: Path) -> dict[str, Any]:
    upgrade(url)
    batched_log = _open_log(url, keys_dir)
    try:
        batched = _append_load(batched_log, CONCURRENCY, SECONDS)
        stats = batched_log.sequencer.stats
        sizes = stats.batch_sizes or [0]
        stored = batched_log.storage.tree_head().size
    finally:
        _close(batched_log)
    single_log = _open_log(url, keys_dir, max_batch=1)
    try:
        single = _append_load(single_log, BASELINE_CONCURRENCY, min(SECONDS, 2.0))
    finally:
        _close(single_log)
    return {
        "batched": batched.as_dict(),
        "one_per_transaction": single.as_dict(),
        "ratio": round(batched.throughput / single.throughput, 1) if single.throughput else None,
        "batches": stats.batches,
        "mean_batch": round(statistics.mean(sizes), 1),
        "largest_batch": stats.largest_batch,
        "events_stored": stored,
    }


def _bulk_load(url: str, leaves: int) -> None:
    """Store the node hashes and state of a ``leaves``-entry tree, as appends would."""
    tree = CompactRange()
    rows: list[tuple[int, bytes]] = []
    for i in range(leaves):
        rows.extend((flat_id(n), n.hash) for n in tree.append(leaf_hash(i.to_bytes(8, "big"))))
    db = Database(url, pooled=False)
    try:
        SqlLogStorage(db).close()  # creates the tree row
        with db.engine.begin() as conn:
            if db.dialect == "postgresql":
                cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                with cursor.copy("COPY audit_node (id, hash) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(("int8", "bytea"))
                    for row in rows:
                        copy.write_row(row)
            else:
                conn.exec_driver_sql("INSERT INTO audit_node (id, hash) VALUES (?, ?)", rows)
            conn.execute(
                text("UPDATE audit_tree SET size = :n, state = :s, root_hash = :r"),
                {"n": tree.size, "s": tree.to_bytes(), "r": tree.root()},
            )
        if db.dialect == "postgresql":
            with db.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "VACUUM ANALYZE audit_node"
                )
    finally:
        db.dispose()


def _proofs(url: str, keys_dir: Path) -> dict[str, Any]:
    upgrade(url)
    started = time.perf_counter()
    _bulk_load(url, PROOF_LEAVES)
    load_seconds = time.perf_counter() - started
    log = _open_log(url, keys_dir)
    rng = random.Random(6962)
    try:
        for _ in range(200):  # warm the reader pool and prepared statements
            log.inclusion_proof(rng.randrange(PROOF_LEAVES), PROOF_LEAVES)
        latencies = []
        for _ in range(PROOF_SAMPLES):
            index = rng.randrange(PROOF_LEAVES)
            t0 = time.perf_counter()
            log.inclusion_proof(index, PROOF_LEAVES)
            latencies.append(time.perf_counter() - t0)
    finally:
        _close(log)
    latencies.sort()
    return {
        "leaves": PROOF_LEAVES,
        "samples": PROOF_SAMPLES,
        "bulk_load_seconds": round(load_seconds, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "max_ms": round(latencies[-1] * 1000, 3),
    }


def run() -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="zhida-bench-audit-") as tmp:
        root = Path(tmp)
        results["sqlite_appends"] = _appends(f"sqlite:///{root / 'appends.db'}", root / "keys")
        results["sqlite_proofs"] = _proofs(f"sqlite:///{root / 'proofs.db'}", root / "keys")
        with pg_database() as pg:
            results["postgresql_appends"] = _appends(pg, root / "keys")
        with pg_database() as pg:
            results["postgresql_proofs"] = _proofs(pg, root / "keys")

    def appends(key: str) -> float:
        return float(results[key]["batched"]["throughput"]) if results[key] else 0.0

    def p99(key: str) -> float:
        return float(results[key]["p99_ms"]) if results[key] else float("inf")

    met = {
        "sqlite_appends": appends("sqlite_appends") >= TARGET_APPENDS,
        "postgresql_appends": appends("postgresql_appends") >= TARGET_APPENDS,
        "sqlite_proof_p99": p99("sqlite_proofs") <= TARGET_PROOF_P99_MS,
        "postgresql_proof_p99": p99("postgresql_proofs") <= TARGET_PROOF_P99_MS,
    }
    sqlite = results["sqlite_appends"]
    figure = (
        f"appends/s sqlite {appends('sqlite_appends'):,.0f}, postgresql "
        f"{appends('postgresql_appends'):,.0f} (one per txn: sqlite "
        f"{sqlite['one_per_transaction']['throughput']:,.0f}); proof p99 sqlite "
        f"{p99('sqlite_proofs')} ms, postgresql {p99('postgresql_proofs')} ms"
    )
    return {
        "name": "audit_log",
        "description": (
            "durable audit-log appends (group commit) vs one transaction per event; "
            f"inclusion-proof latency on a {PROOF_LEAVES:,}-entry tree"
        ),
        "figure": figure,
        "concurrency": CONCURRENCY,
        "seconds": SECONDS,
        **results,
        "target": (
            f"appends >= {TARGET_APPENDS:,}/s on each database; "
            f"proof p99 <= {TARGET_PROOF_P99_MS} ms"
        ),
        "targets_met": met,
        "met": all(met.values()),
    }
