"""Text features for matching and search: Chinese character n-grams, English words.

Text is NFKC-normalised and lowercased, then split into runs. A run of CJK
characters yields its character bigrams and trigrams (a one-character run
yields the character); a run of Latin letters or digits yields the word.
Punctuation and brackets separate runs. Queries additionally drop the filler
words of request phrasing (需要, 申请, 获取, 的 …) so that "需要企业的营业执照信息"
is compared on 企业 / 营业执照信息.

Example::

    >>> from catalog_registry.text import grams, query_grams
    >>> sorted(grams("营业执照"))
    ['业执', '业执照', '执照', '营业', '营业执']
    >>> sorted(query_grams("需要 OFD 营业执照"))
    ['ofd', '业执', '业执照', '执照', '营业', '营业执']
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from catalog_registry.model import Resource

_RUNS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[a-z0-9]+")
# Request phrasing that says nothing about which data is wanted.
QUERY_FILLERS = (
    "需要",
    "需求",
    "申请",
    "获取",
    "查询",
    "提供",
    "调取",
    "请求",
    "共享",
    "相关",
    "有关",
    "用于",
    "办理",
    "我们",
    "本部门",
    "核验",
    "核查",
    "情况",
    "的",
    "请",
)
_FILLER_RE = re.compile("|".join(QUERY_FILLERS))


def normalise(text: str) -> str:
    """NFKC + lowercase; full-width letters and brackets become their ASCII forms."""
    return unicodedata.normalize("NFKC", text).lower()


def grams(text: str) -> set[str]:
    """Bigrams and trigrams of the CJK runs of ``text`` plus its lowercased words."""
    out: set[str] = set()
    for run in _RUNS.findall(normalise(text)):
        if run[0] < "\u3400":  # ASCII word
            out.add(run)
            continue
        n = len(run)
        if n == 1:
            out.add(run)
            continue
        for i in range(n - 1):
            out.add(run[i : i + 2])
        for i in range(n - 2):
            out.add(run[i : i + 3])
    return out


def query_grams(text: str) -> set[str]:
    """:func:`grams` of a request, after removing the filler words."""
    return grams(_FILLER_RE.sub(" ", normalise(text)))


def grams_of_all(texts: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for t in texts:
        out |= grams(t)
    return out


def search_grams(resource: Resource) -> frozenset[str]:
    """The grams a keyword search looks in: name, description and item names.

    A SQL store keeps exactly these in its gram table (one row per resource and gram).
    """
    spec = resource.spec
    return frozenset(grams_of_all((spec.name, spec.description, *(i.name for i in spec.items))))
