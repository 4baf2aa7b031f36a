"""Open a migrated SQL exchange store on SQLite or PostgreSQL for a test."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from exchange.sql import SqlExchangeRepository
from tests.fixtures.postgres import reset_pg_schema
from zhida.db import Database
from zhida.db.migrate import upgrade


def database_url(request: pytest.FixtureRequest, dialect: str) -> str:
    """An empty database: a SQLite file in the test's ``tmp_path`` or a clean PostgreSQL schema."""
    if dialect == "sqlite":
        return f"sqlite:///{request.getfixturevalue('tmp_path') / 'exchange.db'}"
    url: str = request.getfixturevalue("pg_database_url")
    reset_pg_schema(url)
    return url


def open_database(url: str, stack: ExitStack) -> Database:
    """A database on ``url`` migrated to head; disposed with ``stack``."""
    upgrade(url)
    database = Database(url, pool_size=4)
    stack.callback(database.dispose)
    return database


def open_sql_repo(
    request: pytest.FixtureRequest, dialect: str, stack: ExitStack
) -> SqlExchangeRepository:
    return SqlExchangeRepository(open_database(database_url(request, dialect), stack))
