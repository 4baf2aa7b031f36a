"""zhida: a data-sharing exchange and electronic-licence library for government agencies.

This package holds the node's shared infrastructure (configuration, database,
blob store, authentication, server wiring, CLI) and, under ``zhida/<area>/v1/``,
the code generated from ``protos/`` (never edit those files; run ``make proto``).
The domain packages sit beside it: ``catalog_registry``, ``licence_vault``,
``signing``, ``exchange`` and ``audit_log``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zhida")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"
