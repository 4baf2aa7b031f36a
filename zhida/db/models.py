"""The foundation's tables, and discovery of every other module's tables.

Where models live
-----------------
Each area keeps its tables in a module named ``models`` (``licence_vault/models.py``,
``zhida/auth/models.py``, or a ``models/`` package), subclassing
:class:`zhida.db.base.Base`. :func:`load_models` imports every such module found
under the zhida packages, so ``Base.metadata`` is complete for Alembic's
autogenerate and for the drift test without anyone editing this file.

Adding a table
--------------
1. Declare it in your area's ``models.py``.
2. Generate a migration, review it, and commit it with the code::

       .venv/bin/python -m zhida.db.migrate revision "add licence tables"

3. ``tests/unit/db/test_migrations.py`` fails while models and migrations
   disagree on either dialect.

Test code must not subclass ``Base`` (it would leak tables into the shared
metadata); use a private ``MetaData`` instead.

Example::

    from zhida.db import Database
    from zhida.db.models import NodeMeta

    with Database("sqlite:///node.db").session() as s:
        s.merge(NodeMeta(key="region_code", value="420102"))
"""

from __future__ import annotations

import importlib
import importlib.util
from datetime import datetime
from pathlib import Path

from sqlalchemy import MetaData, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zhida.db.base import Base, utcnow

# Top-level packages searched by load_models(); missing ones are skipped.
MODEL_PACKAGES = ("zhida", "catalog_registry", "licence_vault", "signing", "exchange", "audit_log")


class NodeMeta(Base):
    """Key/value facts about this node (``region_code``, ``created_at``, ...)."""

    __tablename__ = "node_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def _model_modules(package: str) -> list[str]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    found: set[str] = set()
    for root in map(Path, spec.submodule_search_locations):
        candidates = [*root.rglob("models.py"), *root.rglob("models/__init__.py")]
        for path in candidates:
            rel = path.relative_to(root).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            # Only real packages (with __init__.py) are importable by dotted name;
            # this also skips migrations/versions and stray script directories.
            if all(
                (root.joinpath(*parts[:i]) / "__init__.py").exists() for i in range(1, len(parts))
            ):
                found.add(".".join((package, *parts)))
    return sorted(found)


def load_models() -> MetaData:
    """Import every ``models`` module of the zhida packages; return the complete metadata."""
    for package in MODEL_PACKAGES:
        for name in _model_modules(package):
            importlib.import_module(name)
    return Base.metadata
