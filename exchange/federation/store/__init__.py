"""Durable state of federation forwarding: the tables behind the SQL replay cache and
idempotency store (:mod:`exchange.federation.store.models`, migration ``0008``).

The stores themselves are :mod:`exchange.federation.sql_replay` and
:mod:`exchange.federation.sql_idempotency`.
"""
