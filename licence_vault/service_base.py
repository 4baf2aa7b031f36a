"""Shared plumbing of :class:`~licence_vault.service.LicenceVaultService`.

How a node opens its vault (its database, blob store, signing deployment and,
when the audit log shares the database, the audit commit that use records
ride on: :mod:`licence_vault.journal`) — once per runtime, shared by the
service and the expiry job (:func:`shared_vault`) —, who a token stands for,
and the base class the handler groups share: the vault opened on first use,
blocking work in the runtime's I/O threads, integrity failures logged and
audited.

Example::

    vault = shared_vault(runtime)     # the same Vault for every caller on this runtime
    actor = actor_of(current_principal())
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from audit_log.events import Action, Outcome
from licence_vault.fetch_batcher import FetchBatcher
from licence_vault.holder import detect_code_type, validate_holder
from licence_vault.matters import MatterRegistry
from licence_vault.signer import open_signer
from licence_vault.sql import SqlLicenceStore
from licence_vault.types import TypeRegistry
from licence_vault.vault import Actor, Vault
from licence_vault.wire import matter_message, type_message
from zhida.auth.principal import Principal
from zhida.errors import IntegrityError
from zhida.licence.v1 import licence_vault_service_pb2 as pb
from zhida.server.runtime import NodeRuntime

__all__ = [
    "MAX_PAGE",
    "ServiceBase",
    "actor_of",
    "holder_of",
    "open_vault",
    "shared_vault",
    "status_base_uri",
]

log = logging.getLogger("zhida.licence")

MAX_PAGE = 500


def status_base_uri(node_name: str) -> str:
    """Where this node's status lists live: ``zhida://<node>/licence/v1/status-lists``."""
    return f"zhida://{node_name}/licence/v1/status-lists"


def _audit_companion(runtime: NodeRuntime) -> Callable[[Sequence[Any]], object] | None:
    """The audit log's append, if it commits durably to the vault's database (see
    :mod:`licence_vault.journal`): use records then ride the audit events' commit."""
    if getattr(runtime.audit.storage, "database", None) is not runtime.database:
        return None
    return runtime.audit.sequencer.append_many


def open_vault(runtime: NodeRuntime) -> Vault:
    """The vault of a serving node: its database, blob store and signing deployment."""
    signer, pdf = open_signer(runtime.config)
    return Vault(
        SqlLicenceStore(runtime.database, companion=_audit_companion(runtime)),
        runtime.blobstore,
        signer,
        pdf=pdf,
        status_base_uri=status_base_uri(runtime.config.node.name),
    )


_shared: weakref.WeakKeyDictionary[NodeRuntime, Vault] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def shared_vault(runtime: NodeRuntime) -> Vault:
    """The one vault of ``runtime`` (:func:`open_vault` on first use): the service and the
    expiry job share its signer, caches and thread pool. Blocks; call it in a thread."""
    with _shared_lock:  # a development node makes its PKI on first open: once
        vault = _shared.get(runtime)
        if vault is None:
            vault = _shared[runtime] = open_vault(runtime)
        return vault


def actor_of(principal: Principal) -> Actor:
    return Actor(principal.organisation, principal.subject, principal.region_code)


def holder_of(principal: Principal) -> str:
    """The holder a holder token stands for: its subject, a resident ID or a USCC."""
    return validate_holder(principal.subject, detect_code_type(principal.subject), field="sub")


class ServiceBase:
    """The vault (opened on first use), the runtime's threads, integrity failures."""

    def __init__(self, runtime: NodeRuntime, vault: Vault | None = None) -> None:
        self._runtime = runtime
        self._recorder = runtime.recorder
        # Opened on first use, in an I/O thread: a development node makes its
        # signing PKI then (seconds), and nodes start without waiting for it.
        self._vault = vault
        self._batcher_lock = threading.Lock()  # the fetch batcher is made once
        self._batcher: FetchBatcher | None = None  # runs fetches without PDFs, in batches
        self._types = pb.ListLicenceTypesResponse(
            types=[type_message(t) for t in TypeRegistry.builtin().all()],
            matters=[matter_message(m) for m in MatterRegistry.builtin().all()],
        )

    @property
    def vault(self) -> Vault:
        """The vault; handlers use it only after ``await self._ready()``."""
        if self._vault is None:  # shared_vault opens it once, under its own lock
            self._vault = shared_vault(self._runtime)
        return self._vault

    async def _ready(self) -> None:
        if self._vault is None:
            await self._runtime.run_blocking(lambda: self.vault)

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._runtime.run_blocking(fn, *args, **kwargs)

    async def _integrity_failure(self, exc: IntegrityError, licence_id: str = "") -> None:
        """A stored document failed its hash check: log it, record it, never serve it."""
        log.error(
            "stored licence document failed its integrity check: %s",
            exc.message,
            extra={"licence_id": licence_id, "reason": exc.reason},
        )
        await self._recorder.record(
            Action.LICENCE_FETCH,
            outcome=Outcome.ERROR,
            reason=exc.reason,
            licence_id=licence_id or None,
            details={"error": "stored document failed its hash check"},
        )
