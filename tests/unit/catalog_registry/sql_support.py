"""Open a migrated SQL catalogue store on SQLite or PostgreSQL for a test (or a module)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from catalog_registry.sql import SqlCatalogRepository
from tests.fixtures.postgres import reset_pg_schema
from zhida.db import Database
from zhida.db.migrate import upgrade

DIALECTS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
]


def database_url(request: pytest.FixtureRequest, dialect: str, tmp_dir: Path) -> str:
    """An empty database: a SQLite file in ``tmp_dir`` or a clean PostgreSQL schema."""
    if dialect == "sqlite":
        return f"sqlite:///{tmp_dir / 'catalog.db'}"
    url: str = request.getfixturevalue("pg_database_url")
    reset_pg_schema(url)
    return url


def open_store(url: str, stack: ExitStack, *, search_index: bool = False) -> SqlCatalogRepository:
    """A store on ``url`` migrated to head; the database is disposed with ``stack``."""
    upgrade(url)
    database = Database(url, pool_size=4)
    stack.callback(database.dispose)
    return SqlCatalogRepository(database, search_index=search_index)
