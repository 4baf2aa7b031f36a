"""The storage interface the exchange domain calls: :class:`ExchangeRepository`.

The domain decides (validation, authorisation, state machines); a repository
only stores and answers queries. :class:`exchange.memory.InMemoryExchangeRepository`
implements it for tests and the demo; :class:`exchange.sql.SqlExchangeRepository`
(SQLite, PostgreSQL) is the node's. Both pass the same contract tests
(``tests/unit/exchange/test_repository_contract.py``).

Contract a store must keep:

* ``insert_request`` raises ``AlreadyExists`` (reason ``REQUEST_EXISTS``) on a
  repeated id; ``insert_grant`` likewise (``GRANT_EXISTS``).
* ``save_request`` is a compare-and-set on the stored state: when the stored
  request is no longer in ``expected_state`` it raises ``Aborted`` (reason
  ``REQUEST_CHANGED``) and writes nothing. It writes the request **and** every
  grant in ``grants`` (insert or overwrite by id) in **one transaction**, so a
  decision never leaves a grant without its request or the reverse.
* ``save_grant`` is a compare-and-set on the stored grant state (``Aborted``
  reason ``GRANT_CHANGED``); ``NotFound`` when the id is unknown.
* At most one live ACTIVE grant per (requester, resource): a write whose
  ACTIVE grant would stand beside a stored ACTIVE grant of the same pair,
  valid past the new grant's creation and not part of the same write, raises
  ``Aborted`` (reason ``GRANT_SUPERSEDE_STALE``: the domain decided on a stale
  view) and writes nothing.
* ``pending_requests`` returns SUBMITTED requests of a provider ordered by
  ``(submitted_at, id)`` ascending (oldest first).
* Every write of grants (``insert_grant``, ``save_grant``, and the grants of
  ``insert_request`` / ``save_request``) moves ``grant_version()`` forward, in
  the same transaction; a write that fails moves nothing.
  ``grants_changed_since(v)`` returns each grant written after version ``v``
  once, in its latest state, ordered by write (then creation), and the
  version that brings the reader up to date. Other processes over the same
  database use it to keep their grant index fresh
  (:class:`exchange.grant_sync.SyncedGrantIndex`).

Example::

    from exchange.memory import InMemoryExchangeRepository
    from exchange.repository import ExchangeRepository

    repo: ExchangeRepository = InMemoryExchangeRepository()
    assert repo.get_request("nope") is None
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from exchange.model import Grant, GrantState, RequestState, ShareRequest
from zhida.errors import Aborted


def second_active_grant(grant: Grant, other: str) -> Aborted:
    """The error for a write that would leave ``other`` ACTIVE beside ``grant``."""
    return Aborted(
        f"grant {other} of {grant.requester_org} for {grant.resource_code} is active and "
        f"was not superseded by grant {grant.id}: decided on a stale view, try again",
        reason="GRANT_SUPERSEDE_STALE",
        metadata={"grant_id": grant.id, "active_grant_id": other},
    )


class ExchangeRepository(Protocol):
    """Storage of share requests and grants."""

    def insert_request(self, request: ShareRequest, grants: Sequence[Grant] = ()) -> None:
        """Store a new request (and, atomically, the grants it created or superseded)."""
        ...

    def get_request(self, request_id: str) -> ShareRequest | None: ...

    def save_request(
        self,
        request: ShareRequest,
        *,
        expected_state: RequestState,
        grants: Sequence[Grant] = (),
    ) -> None:
        """Replace a stored request if it is still ``expected_state``; upsert ``grants``."""
        ...

    def pending_requests(self, provider_org: str, limit: int = 100) -> list[ShareRequest]:
        """SUBMITTED requests addressed to ``provider_org``, oldest first."""
        ...

    def requests_of(self, requester_org: str) -> list[ShareRequest]:
        """Every request filed by ``requester_org``, oldest first."""
        ...

    def insert_grant(self, grant: Grant) -> None: ...

    def get_grant(self, grant_id: str) -> Grant | None: ...

    def save_grant(self, grant: Grant, *, expected_state: GrantState) -> None:
        """Replace a stored grant if its stored state is still ``expected_state``."""
        ...

    def iter_grants(self, state: GrantState | None = None) -> Iterator[Grant]:
        """Stored grants (optionally only those whose stored state is ``state``), by creation."""
        ...

    def grants_of(self, org: str, *, as_provider: bool = False) -> list[Grant]:
        """Grants held by ``org`` (or, ``as_provider``, given by it), by creation."""
        ...

    def grant_version(self) -> int:
        """The current grant version: 0 before any grant write, then growing with each."""
        ...

    def grants_changed_since(self, version: int) -> tuple[list[Grant], int]:
        """Grants written after ``version`` (latest state, in write order) and the new version."""
        ...
