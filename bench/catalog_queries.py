"""The search workload of ``bench/catalog.py``: how catalogue users search, deterministically.

Classes and their shares of the mix (each query asks for a first page of
20; a third of them also for the next page, which is timed as its own
sample):

==================  =====  ==========================================================
class               share  example
==================  =====  ==========================================================
subject             35 %   食品经营许可
phrase              15 %   需要营业执照信息 / 企业社会保险参保登记信息
subject_region      15 %   机动车驾驶证 in 武汉 and below
subject_filter      10 %   社会保险参保, share type conditional (or level, or provider)
filter_only         10 %   everything of one provider / region / share type
common_word          5 %   信息 / 数据 / 登记信息 (half the catalogue or more)
two_subjects         5 %   居民身份证 营业执照 (no resource has both)
english              5 %   OFD API 营业执照
==================  =====  ==========================================================

Example::

    for name, request in query_mix(200, resources, seed=5):
        search(repo, admin, request)
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from catalog_registry.model import Resource, ShareType
from catalog_registry.search import SearchRequest
from catalog_registry.synthetic import QUALIFIERS, SUBJECTS, SUFFIXES, regions
from zhida.regions import Level

MIX = (
    ("subject", 35),
    ("phrase", 15),
    ("subject_region", 15),
    ("subject_filter", 10),
    ("filter_only", 10),
    ("common_word", 5),
    ("two_subjects", 5),
    ("english", 5),
)
ALL_SUBJECTS = tuple(s for subjects in SUBJECTS.values() for s in subjects)


def _request(kind: str, rnd: random.Random, resources: Sequence[Resource]) -> SearchRequest:
    subject = rnd.choice(ALL_SUBJECTS)
    region_codes = [c for c, _ in regions()]
    if kind == "subject":
        return SearchRequest(keywords=subject)
    if kind == "phrase":
        return SearchRequest(
            keywords=rnd.choice(
                (f"需要{subject}信息", f"{rnd.choice(QUALIFIERS)}{subject}{rnd.choice(SUFFIXES)}")
            )
        )
    if kind == "subject_region":
        code = rnd.choice(region_codes)
        return SearchRequest(keywords=subject, region_code=code, include_subregions=True)
    if kind == "subject_filter":
        pick = rnd.choice(resources)
        return rnd.choice(
            (
                SearchRequest(keywords=subject, share_type=rnd.choice(list(ShareType))),
                SearchRequest(keywords=subject, level=rnd.choice(list(Level))),
                SearchRequest(keywords=pick.spec.name[-6:], provider_code=pick.provider_code),
            )
        )
    if kind == "filter_only":
        pick = rnd.choice(resources)
        return rnd.choice(
            (
                SearchRequest(provider_code=pick.provider_code),
                SearchRequest(region_code=rnd.choice(region_codes), include_subregions=True),
                SearchRequest(share_type=rnd.choice(list(ShareType))),
            )
        )
    if kind == "common_word":
        return SearchRequest(keywords=rnd.choice(("信息", "数据", "登记信息", "业务数据")))
    if kind == "two_subjects":
        return SearchRequest(keywords=f"{subject} {rnd.choice(ALL_SUBJECTS)}")
    return SearchRequest(keywords=f"OFD API {subject}")


def query_mix(
    count: int, resources: Sequence[Resource], *, seed: int = 5
) -> Iterator[tuple[str, SearchRequest]]:
    """``count`` (class, request) pairs drawn with the shares of :data:`MIX`."""
    rnd = random.Random(seed)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    for _ in range(count):
        kind = rnd.choices(kinds, weights)[0]
        yield kind, _request(kind, rnd, resources)
