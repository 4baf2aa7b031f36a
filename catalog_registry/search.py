"""Catalogue search: keywords (Chinese n-grams, English words) + filters, keyset-paginated.

:func:`search` validates a :class:`SearchRequest`, turns it into a
:class:`~catalog_registry.repository.ResourceQuery` (the shape a SQL store
implements, documented there) and wraps the page in opaque page tokens.

Ranking: ``score`` = per-mille share of the query's grams found in the
resource's name, description and item names (corpus-independent, so a score
never changes because other resources were added), then code ascending.
The page token is base64url of ``[version, score, code, query fingerprint]``
for the last row: the next page starts strictly after that sort key, so rows
inserted meanwhile never shift or repeat rows, and a token presented with a
different query is refused (``INVALID_PAGE_TOKEN``).

Drafts are searchable only by their provider (filter ``provider_code`` set to
the caller's organisation) and by admins.

Example::

    page = search(repo, principal, SearchRequest(keywords="营业执照", region_code="420000",
                                                 include_subregions=True, page_size=10))
    more = search(repo, principal, SearchRequest(keywords="营业执照", region_code="420000",
                                                 include_subregions=True, page_size=10,
                                                 page_token=page.next_page_token))
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from catalog_registry.access import is_admin
from catalog_registry.model import Resource, ResourceStatus, ShareType
from catalog_registry.repository import CatalogRepository, ResourceQuery, SortKey
from catalog_registry.text import query_grams
from catalog_registry.validation import region_violations, uscc_violations
from zhida.auth.principal import Principal
from zhida.errors import FieldViolation, InvalidArgument, PermissionDenied
from zhida.regions import Level

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_QUERY_GRAMS = 64
_TOKEN_VERSION = 1


@dataclass(frozen=True, slots=True)
class SearchRequest:
    keywords: str = ""
    provider_code: str | None = None
    region_code: str | None = None
    include_subregions: bool = False
    level: Level | None = None
    share_type: ShareType | None = None
    statuses: tuple[ResourceStatus, ...] = (ResourceStatus.PUBLISHED,)
    page_size: int = 0  # 0: DEFAULT_PAGE_SIZE
    page_token: str = ""


@dataclass(frozen=True, slots=True)
class SearchHit:
    score: int  # 0..1000
    resource: Resource


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: tuple[SearchHit, ...]
    next_page_token: str  # empty on the last page


def search(repo: CatalogRepository, principal: Principal, request: SearchRequest) -> SearchPage:
    """One page of results; ``InvalidArgument`` (``INVALID_SEARCH``) on bad input."""
    violations: list[FieldViolation] = []
    if request.provider_code is not None:
        violations += uscc_violations(request.provider_code, "provider_code")
    if request.region_code is not None:
        violations += region_violations(request.region_code, "region_code")
    if not 0 <= request.page_size <= MAX_PAGE_SIZE:
        violations.append(FieldViolation("page_size", f"must be 0..{MAX_PAGE_SIZE}"))
    if not request.statuses:
        violations.append(FieldViolation("statuses", "name at least one status"))
    grams = tuple(sorted(query_grams(request.keywords)))
    if len(grams) > MAX_QUERY_GRAMS:
        violations.append(FieldViolation("keywords", "too long; use fewer keywords"))
    if violations:
        raise InvalidArgument("invalid search", reason="INVALID_SEARCH", violations=violations)
    if (
        ResourceStatus.DRAFT in request.statuses
        and not is_admin(principal)
        and (request.provider_code != principal.organisation)
    ):
        raise PermissionDenied(
            "drafts are visible only to their provider: set provider_code to your organisation",
            reason="DRAFTS_NOT_VISIBLE",
        )
    fingerprint = _fingerprint(request, grams)
    after = decode_page_token(request.page_token, fingerprint) if request.page_token else None
    limit = request.page_size or DEFAULT_PAGE_SIZE
    query = ResourceQuery(
        grams=grams,
        provider_code=request.provider_code,
        region_code=request.region_code,
        include_subregions=request.include_subregions,
        level=request.level,
        share_type=request.share_type,
        statuses=tuple(request.statuses),
        after=after,
        limit=limit + 1,
    )
    rows = repo.search_resources(query)
    page = rows[:limit]
    token = ""
    if len(rows) > limit:
        token = encode_page_token(page[-1].sort_key, fingerprint)
    return SearchPage(tuple(SearchHit(r.score, r.resource) for r in page), token)


def _fingerprint(request: SearchRequest, grams: tuple[str, ...]) -> str:
    shape = [
        list(grams),
        request.provider_code,
        request.region_code,
        request.include_subregions,
        None if request.level is None else int(request.level),
        None if request.share_type is None else request.share_type.value,
        sorted(s.value for s in request.statuses),
    ]
    digest = hashlib.sha256(json.dumps(shape, ensure_ascii=False).encode()).digest()
    return base64.urlsafe_b64encode(digest[:9]).decode()


def encode_page_token(key: SortKey, fingerprint: str) -> str:
    raw = json.dumps([_TOKEN_VERSION, key.score, key.code, fingerprint], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str, fingerprint: str) -> SortKey:
    """The sort key in ``token``; ``InvalidArgument`` if malformed or from another query."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        version, score, code, fp = json.loads(raw)
        valid = (
            version == _TOKEN_VERSION
            and isinstance(score, int)
            and isinstance(code, str)
            and isinstance(fp, str)
        )
    except (binascii.Error, ValueError, TypeError):
        valid = False
    if not valid:
        raise InvalidArgument(
            "malformed page token",
            reason="INVALID_PAGE_TOKEN",
            violations=[FieldViolation("page_token", "not a token we issued")],
        )
    if fp != fingerprint:
        raise InvalidArgument(
            "page token belongs to a different query",
            reason="INVALID_PAGE_TOKEN",
            violations=[FieldViolation("page_token", "repeat the query the token came from")],
        )
    return SortKey(score, code)
