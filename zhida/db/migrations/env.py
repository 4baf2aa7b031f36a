"""Alembic environment for zhida; driven by :mod:`zhida.db.migrate`, not by alembic.ini.

The caller normally passes an open connection (already inside a transaction) in
``config.attributes["connection"]``; otherwise ``sqlalchemy.url`` is used.
SQLite gets ``render_as_batch`` so that ALTERs are emitted as table copies
there, while PostgreSQL runs the same batch blocks as plain ALTERs.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from zhida.db.base import UTCDateTime
from zhida.db.engine import Database
from zhida.db.models import load_models

config = context.config
target_metadata = load_models()


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # Migrations spell out the storage type so they never depend on app code.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("zhida migrations need a connection or sqlalchemy.url")
    db = Database(url, pooled=False)
    try:
        with db.engine.connect() as conn:
            _configure_and_run(conn)
            conn.commit()
    finally:
        db.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
