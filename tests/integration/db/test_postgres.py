"""PostgreSQL-only behaviour: lost connections, conflicts, pool recovery, throwaway clusters."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import select, text

from tests.fixtures.postgres import (
    ThrowawayCluster,
    _answers,
    _libpq_url,
    _pg_bindirs,
    reset_pg_schema,
)
from zhida.db import Database
from zhida.db.migrate import current_revision, head_revision, upgrade
from zhida.db.models import NodeMeta
from zhida.errors import Aborted, Unavailable

pytestmark = pytest.mark.integration


@pytest.fixture
def pg(pg_database_url: str) -> Iterator[Database]:
    reset_pg_schema(pg_database_url)
    upgrade(pg_database_url)
    db = Database(pg_database_url, pool_size=2)
    yield db
    db.dispose()


def _kill_backends(url: str) -> None:
    with psycopg.connect(_libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def _write_then_lose_connection(db: Database, url: str) -> None:
    with db.session() as s:
        s.add(NodeMeta(key="half", value="written"))
        s.flush()
        _kill_backends(url)  # as if the server restarted mid-transaction
        s.execute(text("SELECT 1"))


def test_connection_lost_mid_transaction(pg: Database, pg_database_url: str) -> None:
    with pytest.raises(Unavailable) as info:
        _write_then_lose_connection(pg, pg_database_url)
    assert info.value.reason == "DATABASE_UNAVAILABLE"
    with pg.session() as s:  # the pool recovers by itself
        assert s.scalars(select(NodeMeta)).all() == []


def test_pool_replaces_dead_connections(pg: Database, pg_database_url: str) -> None:
    with pg.session() as s:
        s.add(NodeMeta(key="a", value="1"))
    _kill_backends(pg_database_url)  # pooled connections are now dead
    with pg.session() as s:  # pool_pre_ping notices and reconnects
        assert s.get(NodeMeta, "a") is not None
    assert pg.check() == head_revision()
    assert pg.dialect == "postgresql"


def _conflict(db: Database) -> None:
    with db.session() as s:
        s.execute(
            text("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = 'serialization_failure'; END $$")
        )


def test_serialization_failure_is_aborted(pg: Database) -> None:
    with pytest.raises(Aborted) as info:
        _conflict(pg)
    assert info.value.reason == "TRANSACTION_CONFLICT"


def test_throwaway_cluster_runs_migrations_and_cleans_up() -> None:
    bindirs = _pg_bindirs()
    assert bindirs, "PostgreSQL server binaries (initdb, pg_ctl) not found"
    cluster = ThrowawayCluster(bindirs[0])
    try:
        url = cluster.start()
        assert _answers(url) is None
        assert upgrade(url) == head_revision()
        assert current_revision(url) == head_revision()
    finally:
        cluster.stop()
    assert not cluster.root.exists()
