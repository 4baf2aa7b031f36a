"""Migrations on both dialects: up, down, up again; no drift from the models; names as declared.

These tests guard every future model: a table, column, index or constraint
added to a ``models`` module without a matching migration fails here.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, Column, Integer, MetaData, String, UniqueConstraint, inspect

from zhida.db import Database
from zhida.db.migrate import (
    MIGRATIONS_DIR,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from zhida.db.models import load_models


def _tables(url: str) -> set[str]:
    db = Database(url, pooled=False)
    try:
        return set(inspect(db.engine).get_table_names()) - {"alembic_version"}
    finally:
        db.dispose()


def test_up_down_up(db_url: str) -> None:
    head = head_revision()
    assert current_revision(db_url) is None
    assert upgrade(db_url) == head
    assert upgrade(db_url) == head  # idempotent
    assert current_revision(db_url) == head
    assert _tables(db_url) == set(load_models().tables)
    assert downgrade(db_url, "base") is None
    assert current_revision(db_url) is None
    assert _tables(db_url) == set()
    assert upgrade(db_url) == head
    assert _tables(db_url) == set(load_models().tables)


def _drift(url: str, metadata: MetaData) -> list[Any]:
    db = Database(url, pooled=False)
    try:
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff: list[Any] = compare_metadata(ctx, metadata)
            return diff
    finally:
        db.dispose()


def test_no_drift_between_models_and_migrations(db_url: str) -> None:
    upgrade(db_url)
    diff = _drift(db_url, load_models())
    assert diff == [], f"models and migrations disagree: {diff}"


def test_drift_check_notices_differences(db_url: str) -> None:
    upgrade(db_url)
    changed = MetaData()
    for table in load_models().sorted_tables:
        table.to_metadata(changed)
    node_meta = changed.tables["node_meta"]
    node_meta.append_column(Column("extra", Integer))
    node_meta.c.key.type = String(32)
    kinds = sorted(d[0][0] if isinstance(d, list) else d[0] for d in _drift(db_url, changed))
    assert kinds == ["add_column", "modify_type"]


def test_reflected_constraint_names_match_models(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url, pooled=False)
    try:
        insp = inspect(db.engine)
        for table in load_models().sorted_tables:
            pk = insp.get_pk_constraint(table.name)["name"]
            assert pk == table.primary_key.name
            fks = {fk["name"] for fk in insp.get_foreign_keys(table.name)}
            assert fks == {c.name for c in table.foreign_key_constraints}
            uqs = {uq["name"] for uq in insp.get_unique_constraints(table.name)}
            assert uqs == {c.name for c in table.constraints if isinstance(c, UniqueConstraint)}
            cks = {ck["name"] for ck in insp.get_check_constraints(table.name)}
            assert cks == {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
            expected_ix = {ix.name for ix in table.indexes}
            reflected_ix = {
                ix["name"]
                for ix in insp.get_indexes(table.name)
                if not ix.get("duplicates_constraint")
            }
            assert reflected_ix == expected_ix
    finally:
        db.dispose()


def test_concurrent_upgrades_agree(db_url: str) -> None:
    results: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(upgrade(db_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert results == [head_revision()] * 2


def test_migration_files_are_shipped_as_package_modules() -> None:
    versions = MIGRATIONS_DIR / "versions"
    assert (MIGRATIONS_DIR / "__init__.py").exists()
    assert (versions / "__init__.py").exists()  # so setuptools ships the .py files
    assert (MIGRATIONS_DIR / "script.py.mako").exists()
    names = sorted(p.name for p in versions.glob("[0-9]*.py"))
    assert names[0] == "0001_foundation.py"
    assert all(Path(n).stem[:4].isdigit() for n in names)
