"""Database layer: engine and sessions, declarative base, models, migrations.

Example::

    from zhida.config import load_config
    from zhida.db import Database
    from zhida.db.migrate import upgrade

    cfg = load_config()
    upgrade(cfg.database.url)
    db = Database.from_config(cfg.database)
    with db.session() as session:
        ...
"""

from zhida.db.base import Base, UTCDateTime, utcnow
from zhida.db.engine import Database

__all__ = ["Base", "Database", "UTCDateTime", "utcnow"]
