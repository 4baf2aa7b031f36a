"""Share requests, grants, data delivery and routing between nodes (issues 7, 8).

Pure domain (no gRPC, no SQL); the service and store layers build on it:

* :mod:`exchange.model` — ``ShareRequest`` / ``RequestState`` (submitted →
  approved | rejected | withdrawn), ``Grant`` / ``GrantState`` (active →
  expired | revoked), the transition checks.
* :mod:`exchange.requests` — ``ShareRequests``: apply, approve (possibly
  fewer items or a shorter period), reject, withdraw, pending (oldest first).
* :mod:`exchange.grants` — ``GrantIndex``: O(1) ``check``/``admit`` per
  delivery keyed by (requester org, resource code), immediate revocation.
* :mod:`exchange.ratelimit` — per-grant token buckets (``RATE_LIMITED``).
* :mod:`exchange.minimise` — only granted, releasable fields leave.
* :mod:`exchange.repository` (``ExchangeRepository``) and
  :mod:`exchange.memory` — storage interface and in-memory implementation.
* :mod:`exchange.access`, :mod:`exchange.validation` — authorisation and field checks.

Example::

    index = GrantIndex(repo, clock)
    book = ShareRequests(repo, catalogue.get_resource, negative.may_release, index, clock)
    request = book.apply(clerk, spec)            # SUBMITTED, or APPROVED if unconditional
    book.approve(provider_admin, request.id, items=("姓名",))
    grant = index.admit(clerk.organisation, spec.resource_code, clock())
    rows = minimise(provider_rows, grant.items, partial(negative.may_release, grant.resource_code))
"""
