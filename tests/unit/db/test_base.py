"""Declarative base: naming convention, UTC datetimes, model discovery (no database needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import (
    CheckConstraint,
    Column,
    Constraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from zhida.db.base import MAX_IDENTIFIER_LENGTH, NAMING_CONVENTION, UTCDateTime, utcnow
from zhida.db.models import _model_modules, load_models

PREFIXES = {
    "PrimaryKeyConstraint": "pk_",
    "ForeignKeyConstraint": "fk_",
    "UniqueConstraint": "uq_",
    "CheckConstraint": "ck_",
    "Index": "ix_",
}


def test_utcnow_is_aware_utc() -> None:
    now = utcnow()
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


SQLITE: Dialect = sqlite.dialect()
POSTGRESQL: Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRESQL], ids=["sqlite", "postgresql"])
def test_utc_datetime_rejects_naive(dialect: Dialect) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        UTCDateTime().process_bind_param(datetime(2024, 1, 1), dialect)


def test_utc_datetime_converts_to_utc() -> None:
    beijing = datetime(2024, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))
    t = UTCDateTime()
    assert t.process_bind_param(beijing, SQLITE) == datetime(2024, 1, 1, 0, 0)
    assert t.process_bind_param(beijing, POSTGRESQL) == datetime(2024, 1, 1, tzinfo=UTC)
    loaded = t.process_result_value(datetime(2024, 1, 1), SQLITE)
    assert loaded == beijing
    assert loaded is not None
    assert loaded.tzinfo is UTC


def test_every_constraint_follows_the_naming_convention() -> None:
    for table in load_models().sorted_tables:
        items: list[Constraint | Index] = [*table.constraints, *table.indexes]
        for item in items:
            name = item.name
            assert isinstance(name, str), f"{table.name}: unnamed {type(item).__name__}"
            assert name.startswith(PREFIXES[type(item).__name__]), name
            assert len(name) <= MAX_IDENTIFIER_LENGTH, f"{name} is truncated on PostgreSQL"
        assert table.primary_key.name == f"pk_{table.name}"


def test_convention_names_new_constraints() -> None:
    md = MetaData(naming_convention=NAMING_CONVENTION)
    t = Table(
        "widget",
        md,
        Column("id", Integer, primary_key=True),
        Column("a", String(5)),
        Column("b", Integer),
        UniqueConstraint("a", "b"),
        CheckConstraint("b > 0", name="b_positive"),
        Index(None, "b"),
    )
    ddl = str(CreateTable(t).compile(dialect=POSTGRESQL))
    assert "CONSTRAINT pk_widget PRIMARY KEY" in ddl
    assert "CONSTRAINT uq_widget_a_b UNIQUE" in ddl
    assert "CONSTRAINT ck_widget_b_positive CHECK" in ddl
    (index,) = t.indexes
    assert "ix_widget_b" in str(CreateIndex(index).compile(dialect=SQLITE))


def test_model_discovery_finds_foundation_models() -> None:
    assert "zhida.db.models" in _model_modules("zhida")
    assert _model_modules("no_such_package_zhida") == []
    assert "node_meta" in load_models().tables
