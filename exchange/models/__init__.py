"""The exchange's tables (SQLAlchemy), one module per part; importing this package loads both.

* :mod:`exchange.models.requests` — share requests and grants (migration 0005).
* :mod:`exchange.models.delivery` — hosted datasets, subscriptions, delivery records
  (migration 0006).
"""

from exchange.models import delivery, requests

__all__ = ["delivery", "requests"]
