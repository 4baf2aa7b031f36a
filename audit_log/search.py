"""Searching the log: filters, holder hashing, opaque page tokens.

A :class:`SearchRequest` is what an auditor (or a holder) asks for, with the
holder id in clear; :func:`search_events` hashes it with the node's holder key,
runs the query and returns a :class:`SearchPage`. Results come in log order
(or newest first); the page token encodes the last index returned and a
fingerprint of the filters, so a token is refused when the filters change
between pages (INVALID_ARGUMENT on ``page_token``) and paging stays stable
while the log grows.

Example::

    page = search_events(log, SearchRequest(organisation="114201000000301708", page_size=20))
    while page.next_page_token:
        page = search_events(log, SearchRequest(organisation="114201000000301708",
                                                page_size=20, page_token=page.next_page_token))
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime

from audit_log.events import Action, Outcome
from audit_log.log import AuditLog, bad_argument
from audit_log.storage import EventQuery, StoredEvent

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_TOKEN_VERSION = 1
_TOKEN_REASON = "INVALID_PAGE_TOKEN"  # noqa: S105 (an error reason)


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """Search filters as a caller gives them (``holder_id`` in clear; ``until`` exclusive)."""

    organisation: str | None = None
    subject: str | None = None
    resource: str | None = None
    licence_id: str | None = None
    holder_id: str | None = None
    actions: tuple[Action, ...] = ()
    outcome: Outcome | None = None
    since: datetime | None = None
    until: datetime | None = None
    newest_first: bool = False
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True, slots=True)
class SearchPage:
    events: list[StoredEvent]
    next_page_token: str  # "" on the last page


def _fingerprint(query: EventQuery) -> str:
    """Identifies the filters (not the page) a token was issued for."""
    filters = replace(query, after=None, limit=0)
    text = repr(
        (
            filters.organisation, filters.subject, filters.resource, filters.licence_id,
            filters.holder_ref, tuple(a.value for a in filters.actions),
            None if filters.outcome is None else filters.outcome.value,
            None if filters.since is None else filters.since.isoformat(),
            None if filters.until is None else filters.until.isoformat(),
            filters.newest_first,
        )
    )  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_page_token(after: int, query: EventQuery) -> str:
    raw = json.dumps({"v": _TOKEN_VERSION, "after": after, "f": _fingerprint(query)})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str, query: EventQuery) -> int:
    """The cursor in ``token``; InvalidArgument if it is malformed or for other filters."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        after = data["after"]
        ok = data.get("v") == _TOKEN_VERSION and isinstance(after, int) and after >= 0
    except (UnicodeEncodeError, binascii.Error, ValueError, KeyError, TypeError):
        ok, after = False, 0
    if not ok:
        raise bad_argument("page_token", "is not a token this service issued", _TOKEN_REASON)
    if data.get("f") != _fingerprint(query):
        raise bad_argument(
            "page_token", "was issued for different filters; start again without it", _TOKEN_REASON
        )
    return int(after)


def build_query(log: AuditLog, request: SearchRequest) -> EventQuery:
    """Validate ``request`` and turn it into a storage query (holder id hashed)."""
    size = request.page_size or DEFAULT_PAGE_SIZE
    if not 0 < size <= MAX_PAGE_SIZE:
        raise bad_argument(
            "page_size", f"must be between 1 and {MAX_PAGE_SIZE}", "INVALID_PAGE_SIZE"
        )
    if request.since and request.until and request.since >= request.until:
        raise bad_argument("to_time", "must be after from_time", "INVALID_TIME_RANGE")
    holder_ref = None if request.holder_id is None else log.holder_ref(request.holder_id)
    query = EventQuery(
        organisation=request.organisation,
        subject=request.subject,
        resource=request.resource,
        licence_id=request.licence_id,
        holder_ref=holder_ref,
        actions=request.actions,
        outcome=request.outcome,
        since=request.since,
        until=request.until,
        newest_first=request.newest_first,
        limit=size,
    )
    if request.page_token:
        query = replace(query, after=decode_page_token(request.page_token, query))
    return query


def search_events(log: AuditLog, request: SearchRequest) -> SearchPage:
    """One page of events matching ``request``."""
    query = build_query(log, request)
    rows = log.storage.search(replace(query, limit=query.limit + 1))  # one more: is there a next?
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    token = encode_page_token(rows[-1].index, query) if more and rows else ""
    return SearchPage(rows, token)
