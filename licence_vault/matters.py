"""Matters (事项): what an application workflow fetches licences for.

A fetch names a matter; the matter decides whether the holder's consent is
needed or whether a legal basis allows the fetch without it (recorded as
such), and which licence types it may use at all. The codes are zhida's own
short codes for the "高效办成一件事" matters of the seeds; the annotated copy's
watermark reads "仅供 <matter name> 使用".

Example::

    >>> m = MatterRegistry.builtin().get("YJS-KBCYD")
    >>> m.name, m.legal_basis is None
    ('开办餐饮店', True)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from licence_vault.types import (
    BIRTH_CERTIFICATE,
    BUSINESS_LICENCE,
    DISABILITY_CERTIFICATE,
    DRUG_BUSINESS_PERMIT,
    FOOD_BUSINESS_PERMIT,
    HOUSEHOLD_REGISTER,
    MARRIAGE_CERTIFICATE,
    ROAD_TRANSPORT_PERMIT,
    SOCIAL_SECURITY_CARD,
)
from zhida.errors import FieldViolation, InvalidArgument

__all__ = ["BUILTIN_MATTERS", "Matter", "MatterRegistry"]

UNKNOWN_MATTER = "UNKNOWN_MATTER"


@dataclass(frozen=True, slots=True)
class Matter:
    code: str
    name: str
    type_codes: tuple[str, ...]  # licence types the matter may use
    legal_basis: str | None = None  # set: fetch allowed without consent, recorded as such
    use_days: int = 30  # how long an annotated copy may be used

    @property
    def watermark(self) -> str:
        return f"仅供{self.name}使用"


class MatterRegistry:
    def __init__(self, matters: Iterable[Matter]) -> None:
        self._by_code = {m.code: m for m in matters}

    @classmethod
    def builtin(cls) -> MatterRegistry:
        return cls(BUILTIN_MATTERS)

    def all(self) -> list[Matter]:
        return list(self._by_code.values())

    def get(self, code: str, field: str = "matter_code") -> Matter:
        found = self._by_code.get(code)
        if found is None:
            raise InvalidArgument(
                f"unknown matter {str(code)[:40]!r}",
                reason=UNKNOWN_MATTER,
                violations=[FieldViolation(field, "is not a known matter code")],
            )
        return found


BUILTIN_MATTERS: tuple[Matter, ...] = (
    Matter("YJS-KBCYD", "开办餐饮店", (BUSINESS_LICENCE.code, FOOD_BUSINESS_PERMIT.code)),
    Matter("YJS-KBYSQY", "开办运输企业", (BUSINESS_LICENCE.code, ROAD_TRANSPORT_PERMIT.code)),
    Matter(
        "YJS-XSECS",
        "新生儿出生",
        (BIRTH_CERTIFICATE.code, HOUSEHOLD_REGISTER.code, MARRIAGE_CERTIFICATE.code),
    ),
    Matter("YJS-CJRFW", "残疾人服务", (DISABILITY_CERTIFICATE.code, HOUSEHOLD_REGISTER.code)),
    Matter("YJS-SBKJMFW", "社会保障卡居民服务", (SOCIAL_SECURITY_CARD.code,)),
    Matter("YJS-KBYD", "开办药店", (BUSINESS_LICENCE.code, DRUG_BUSINESS_PERMIT.code)),
    Matter(
        "YJS-QYPCHC",
        "企业破产信息核查",
        (BUSINESS_LICENCE.code, FOOD_BUSINESS_PERMIT.code, DRUG_BUSINESS_PERMIT.code),
        legal_basis="《中华人民共和国企业破产法》第二十五条（管理人调查债务人财产状况）",
        use_days=90,
    ),
    Matter(
        "YJS-SHJZ",
        "社会救助",
        (HOUSEHOLD_REGISTER.code, DISABILITY_CERTIFICATE.code, SOCIAL_SECURITY_CARD.code),
        legal_basis="《社会救助暂行办法》（家庭经济状况核对）",
    ),
)
