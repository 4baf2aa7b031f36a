"""Declarative base, constraint naming convention and a portable UTC datetime type.

Every table of every zhida module derives from :class:`Base`. Its metadata
carries a naming convention so that indexes and constraints get the same,
predictable names on SQLite and PostgreSQL; Alembic then creates, compares
and drops them by name on both. Keep generated names within PostgreSQL's 63
character limit (longer names would be truncated on PostgreSQL only); the
test suite checks this.

Columns annotated ``Mapped[datetime]`` map to :class:`UTCDateTime`: values
must be timezone-aware, are stored in UTC and always come back as aware UTC
datetimes, including on SQLite, which has no timezone support.

Example::

    from datetime import datetime

    from sqlalchemy import String
    from sqlalchemy.orm import Mapped, mapped_column

    from zhida.db.base import Base, utcnow

    class Widget(Base):
        __tablename__ = "widget"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100), unique=True)  # uq_widget_name
        created_at: Mapped[datetime] = mapped_column(default=utcnow)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import DateTime, MetaData
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

# Names are spelled out (not left to the database) so that migrations written
# on one dialect address the same constraint on the other.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# PostgreSQL silently truncates longer identifiers; SQLite would keep them whole.
MAX_IDENTIFIER_LENGTH = 63


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the default for timestamp columns)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE`` that round-trips aware UTC datetimes on every dialect.

    Naive datetimes are rejected on the way in: a naive value's meaning depends on
    the server's clock settings, which is exactly the ambiguity this type removes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: use an aware datetime (e.g. utcnow())")
        value = value.astimezone(UTC)
        # SQLite stores text without an offset; keep it canonical (UTC, no tz) so
        # text comparison and ordering stay chronological.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of all zhida tables; see the module docstring."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}
