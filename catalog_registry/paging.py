"""Page sizes and opaque page tokens for the catalogue's list calls (history, demands, entries).

A token is base64url of ``[kind, position, fingerprint]``: ``kind`` names the
list, ``position`` is where the next page starts (an offset into an
append-only list, or the last row's sequence number) and ``fingerprint``
binds the token to the filters it was issued for, so a token replayed with
other filters is refused instead of silently skipping rows. Search has its
own keyset tokens (:mod:`catalog_registry.search`).

Example::

    >>> from catalog_registry.paging import decode_token, encode_token, page_size
    >>> token = encode_token("history", 20, "1-01-001-0000-000001")
    >>> decode_token(token, "history", "1-01-001-0000-000001")
    20
    >>> page_size(0)
    20
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from zhida.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def page_size(requested: int, field: str = "page_size") -> int:
    """The page size to use: 0 means the default; negative or above the maximum is refused."""
    if not 0 <= requested <= MAX_PAGE_SIZE:
        raise InvalidArgument(
            f"{field} must be 0..{MAX_PAGE_SIZE}",
            reason="INVALID_PAGE_SIZE",
            violations=[FieldViolation(field, f"must be 0..{MAX_PAGE_SIZE}, got {requested}")],
        )
    return requested or DEFAULT_PAGE_SIZE


def _fingerprint(filters: str) -> str:
    return hashlib.sha256(filters.encode()).hexdigest()[:12]


def encode_token(kind: str, position: int, filters: str = "") -> str:
    """A token resuming list ``kind`` at ``position`` under ``filters``."""
    raw = json.dumps([kind, position, _fingerprint(filters)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, kind: str, filters: str = "") -> int:
    """The position in ``token``; ``InvalidArgument`` (INVALID_PAGE_TOKEN) if it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        got_kind, position, fingerprint = json.loads(raw)
        valid = (
            got_kind == kind
            and isinstance(position, int)
            and position >= 0
            and fingerprint == _fingerprint(filters)
        )
    except (binascii.Error, ValueError, TypeError):
        valid = False
    if not valid:
        raise InvalidArgument(
            "page token is not from this list with these filters",
            reason="INVALID_PAGE_TOKEN",
            violations=[FieldViolation("page_token", "repeat the request the token came from")],
        )
    return int(position)
