"""Licence types (证照类型): what a licence of each type carries and how long it is valid.

A :class:`LicenceType` has its GB/T 36904 type code (the defining agency's
USCC + a 3-digit sequence), a name, the defining agency, the holder kind
(person or organisation), the data fields printed on its face (照面信息)
with their kinds and whether they are required, a validity rule and the
document layout (title, field order, labels) used when it is rendered.

:data:`BUILTIN_TYPES` are the nine types of the "高效办成一件事" matters in the
seeds. The defining agencies' codes are *synthetic* (well-formed, valid check
characters, not the real registrations), like ``zhida.auth.mint.DEMO_ORGS``.

Data checking (:meth:`LicenceType.check_data`) normalises every value to a
string (dates ``YYYY-MM-DD``, integers without leading zeros, codes in upper
case) and reports *every* bad field at once as one InvalidArgument with a
field violation each (``data.许可证编号``).

Example::

    >>> registry = TypeRegistry.builtin()
    >>> food = registry.by_name("食品经营许可证")
    >>> food.code
    '111000000000170137002'
    >>> food.default_validity_years
    5
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from stdnum.cn import ric, uscc

from licence_vault.codes import is_compact_uscc
from licence_vault.holder import HolderCodeType
from licence_vault.identifier import validate_type_code
from zhida.errors import FieldViolation, InvalidArgument

__all__ = [
    "BUILTIN_TYPES",
    "DEFINING_AGENCIES",
    "FieldKind",
    "FieldSpec",
    "LicenceType",
    "TypeRegistry",
]

MAX_TEXT = 2000
UNKNOWN_TYPE = "UNKNOWN_LICENCE_TYPE"
INVALID_DATA = "INVALID_LICENCE_DATA"


class FieldKind(enum.StrEnum):
    TEXT = "text"
    DATE = "date"  # YYYY-MM-DD
    INTEGER = "integer"  # non-negative
    CHOICE = "choice"  # one of FieldSpec.choices
    USCC = "uscc"  # GB 32100
    RESIDENT_ID = "resident_id"  # GB 11643


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field on a licence's face."""

    key: str  # the field's name in the data and on the document
    kind: FieldKind = FieldKind.TEXT
    required: bool = True
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # full-match regex for TEXT values
    max_length: int = 200
    label: str | None = None  # printed label if not the key

    @property
    def printed_label(self) -> str:
        return self.label or self.key

    def problem(self, value: str) -> tuple[str | None, str]:
        """(problem or None, normalised value)."""
        text = value.strip()
        if not text:
            return "must not be empty", text
        if len(text) > self.max_length:
            return f"is longer than {self.max_length} characters", text
        if _CONTROL.search(text):
            return "contains a control character", text
        kind = self.kind
        if kind is FieldKind.DATE:
            try:
                return None, date.fromisoformat(text).isoformat()
            except ValueError:
                return "must be a date YYYY-MM-DD", text
        if kind is FieldKind.INTEGER:
            if not text.isascii() or not text.isdigit():
                return "must be a non-negative integer", text
            return None, str(int(text))
        if kind is FieldKind.CHOICE:
            if text not in self.choices:
                return f"must be one of {', '.join(self.choices)}", text
            return None, text
        if kind is FieldKind.USCC:
            if not (is_compact_uscc(text.upper()) or uscc.is_valid(text.upper())):
                return "must be a valid unified social credit code (GB 32100)", text
            return None, text.upper()
        if kind is FieldKind.RESIDENT_ID:
            if not ric.is_valid(text.upper()):
                return "must be a valid resident ID number (GB 11643)", text
            return None, text.upper()
        if self.pattern is not None and not _compiled(self.pattern).fullmatch(text):
            return f"does not have the expected form ({self.pattern})", text
        return None, text


@dataclass(frozen=True, slots=True)
class LicenceType:
    """A licence type; see the module docstring."""

    code: str
    name: str
    defining_agency: str
    holder_type: HolderCodeType
    fields: tuple[FieldSpec, ...]
    default_validity_years: int | None  # None: valid indefinitely (长期)
    max_validity_years: int | None = None
    valid_until_required: bool = False
    number_field: str | None = None  # the field printed as 证照编号
    holder_field: str | None = None  # a field that must equal the holder code
    title: str | None = None  # document title if not the name
    notes: str = ""
    layout: tuple[str, ...] = field(default=())  # field keys in printed order (default: fields)

    def __post_init__(self) -> None:
        validate_type_code(self.code)
        keys = [f.key for f in self.fields]
        if len(set(keys)) != len(keys):
            raise ValueError(f"type {self.name}: duplicate field keys")
        for ref in (self.number_field, self.holder_field, *self.layout):
            if ref is not None and ref not in keys:
                raise ValueError(f"type {self.name}: unknown field {ref!r}")

    @property
    def defining_agency_code(self) -> str:
        return self.code[:18]

    @property
    def document_title(self) -> str:
        return self.title or self.name

    def field(self, key: str) -> FieldSpec | None:
        for spec in self.fields:
            if spec.key == key:
                return spec
        return None

    def layout_lines(self, data: Mapping[str, str]) -> list[tuple[str, str]]:
        """(label, value) pairs in printed order, absent optional fields skipped."""
        order = self.layout or tuple(f.key for f in self.fields)
        lines = []
        for key in order:
            spec = self.field(key)
            if spec is not None and key in data:
                lines.append((spec.printed_label, data[key]))
        return lines

    def check_data(
        self, data: Mapping[str, str], *, holder_code: str | None = None, prefix: str = "data"
    ) -> dict[str, str]:
        """Normalised data, or InvalidArgument(INVALID_LICENCE_DATA) naming every bad field."""
        violations: list[FieldViolation] = []
        out: dict[str, str] = {}
        known = {f.key for f in self.fields}
        for key in data:
            if key not in known:
                violations.append(
                    FieldViolation(f"{prefix}.{key}", f"is not a field of {self.name}")
                )
        for spec in self.fields:
            raw = data.get(spec.key)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                if spec.required:
                    violations.append(FieldViolation(f"{prefix}.{spec.key}", "is required"))
                continue
            if not isinstance(raw, str):
                violations.append(FieldViolation(f"{prefix}.{spec.key}", "must be a string"))
                continue
            problem, value = spec.problem(raw)
            if problem is not None:
                violations.append(FieldViolation(f"{prefix}.{spec.key}", problem))
            else:
                out[spec.key] = value
        if (
            self.holder_field is not None
            and holder_code is not None
            and self.holder_field in out
            and out[self.holder_field] != holder_code
        ):
            violations.append(
                FieldViolation(f"{prefix}.{self.holder_field}", "must equal the holder code")
            )
        if violations:
            first = violations[0]
            raise InvalidArgument(
                f"{self.name}: {first.field} {first.description}"
                + (f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""),
                reason=INVALID_DATA,
                violations=violations,
            )
        return out


class TypeRegistry:
    """The licence types a vault knows, by code and by name."""

    def __init__(self, types: Iterable[LicenceType]) -> None:
        self._by_code: dict[str, LicenceType] = {}
        for t in types:
            if t.code in self._by_code:
                raise ValueError(f"duplicate licence type code {t.code}")
            self._by_code[t.code] = t
        self._by_name = {t.name: t for t in self._by_code.values()}

    @classmethod
    def builtin(cls) -> TypeRegistry:
        return cls(BUILTIN_TYPES)

    def all(self) -> list[LicenceType]:
        return list(self._by_code.values())

    def get(self, code: str, field: str = "type_code") -> LicenceType:
        """The type with ``code``; InvalidArgument(UNKNOWN_LICENCE_TYPE) naming ``field``."""
        found = self._by_code.get(code)
        if found is None:
            raise InvalidArgument(
                f"unknown licence type {str(code)[:40]!r}",
                reason=UNKNOWN_TYPE,
                violations=[FieldViolation(field, "is not a known licence type code")],
            )
        return found

    def by_name(self, name: str) -> LicenceType:
        found = self._by_name.get(name)
        if found is None:
            raise InvalidArgument(f"unknown licence type name {name!r}", reason=UNKNOWN_TYPE)
        return found

    def resolve(self, code_or_name: str, field: str = "type_code") -> LicenceType:
        """By code, else by name (for CSV files that name the type)."""
        return self._by_name.get(code_or_name) or self.get(code_or_name, field)


# -- the built-in types -----------------------------------------------------------

# Synthetic codes of the defining agencies (see the module docstring).
DEFINING_AGENCIES: Mapping[str, str] = {
    "国家市场监督管理总局": "111000000000170137",
    "国家药品监督管理局": "111000000000171443",
    "交通运输部": "111000000000190198",
    "国家卫生健康委员会": "11100000000017523L",
    "公安部": "11100000000012124W",
    "民政部": "11100000000012394F",
    "中国残疾人联合会": "1310000000001877XN",
    "人力资源和社会保障部": "11100000000017718E",
}

_A = DEFINING_AGENCIES
_T, _D, _I, _C = FieldKind.TEXT, FieldKind.DATE, FieldKind.INTEGER, FieldKind.CHOICE
_SEX = ("男", "女")


def _f(key: str, kind: FieldKind = _T, required: bool = True, **kw: object) -> FieldSpec:
    return FieldSpec(key, kind, required, **kw)  # type: ignore[arg-type]


BUSINESS_LICENCE = LicenceType(
    code=_A["国家市场监督管理总局"] + "001",
    name="营业执照",
    defining_agency="国家市场监督管理总局",
    holder_type=HolderCodeType.USCC,
    fields=(
        _f("统一社会信用代码", FieldKind.USCC),
        _f("名称"),
        _f(
            "类型",
            _C,
            choices=(
                "有限责任公司",
                "股份有限公司",
                "个人独资企业",
                "合伙企业",
                "个体工商户",
                "农民专业合作社",
                "外商投资企业",
            ),
        ),
        _f("法定代表人"),
        _f("注册资本", required=False, pattern=r"[0-9]+(\.[0-9]+)?万元(人民币)?"),
        _f("成立日期", _D),
        _f("住所", max_length=300),
        _f("经营范围", max_length=MAX_TEXT),
        _f("登记机关"),
    ),
    default_validity_years=None,
    number_field="统一社会信用代码",
    holder_field="统一社会信用代码",
    notes="营业期限 may be 长期; a limited term sets valid_until.",
)

FOOD_BUSINESS_PERMIT = LicenceType(
    code=_A["国家市场监督管理总局"] + "002",
    name="食品经营许可证",
    defining_agency="国家市场监督管理总局",
    holder_type=HolderCodeType.USCC,
    fields=(
        _f("经营者名称"),
        _f("社会信用代码", FieldKind.USCC),
        _f("法定代表人（负责人）"),
        _f("住所", max_length=300),
        _f("经营场所", max_length=300),
        _f("主体业态", _C, choices=("食品销售经营者", "餐饮服务经营者", "单位食堂")),
        _f("经营项目", max_length=MAX_TEXT),
        _f("许可证编号", pattern=r"JY[0-9]{14}"),
        _f("日常监督管理机构", required=False),
        _f("投诉举报电话", required=False, pattern=r"[0-9-]{5,20}"),
    ),
    default_validity_years=5,
    max_validity_years=5,
    valid_until_required=True,
    number_field="许可证编号",
    holder_field="社会信用代码",
)

ROAD_TRANSPORT_PERMIT = LicenceType(
    code=_A["交通运输部"] + "001",
    name="道路运输经营许可证",
    defining_agency="交通运输部",
    holder_type=HolderCodeType.USCC,
    fields=(
        _f("业户名称"),
        _f("统一社会信用代码", FieldKind.USCC),
        _f("地址", max_length=300),
        _f("经营许可证号", max_length=40),
        _f(
            "经营范围",
            _C,
            choices=(
                "道路普通货物运输",
                "道路危险货物运输",
                "道路旅客运输",
                "道路货物专用运输（集装箱）",
                "大型物件运输",
            ),
        ),
        _f("经济类型", required=False),
        _f("核发机关"),
    ),
    default_validity_years=4,
    max_validity_years=6,
    valid_until_required=True,
    number_field="经营许可证号",
    holder_field="统一社会信用代码",
)

BIRTH_CERTIFICATE = LicenceType(
    code=_A["国家卫生健康委员会"] + "001",
    name="出生医学证明",
    defining_agency="国家卫生健康委员会",
    holder_type=HolderCodeType.RESIDENT_ID,
    fields=(
        _f("新生儿姓名"),
        _f("性别", _C, choices=_SEX),
        _f("出生日期", _D),
        _f("出生孕周", _I, required=False),
        _f("健康状况", _C, choices=("良好", "一般", "差")),
        _f("体重（克）", _I),
        _f("身长（厘米）", _I),
        _f("出生地点", max_length=300),
        _f("母亲姓名"),
        _f("母亲身份证件号码", FieldKind.RESIDENT_ID),
        _f("父亲姓名", required=False),
        _f("父亲身份证件号码", FieldKind.RESIDENT_ID, required=False),
        _f("出生证编号", pattern=r"[A-Z][0-9]{9}"),
        _f("接生机构名称"),
    ),
    default_validity_years=None,
    number_field="出生证编号",
    notes="The holder is the child (its ID number, given at birth registration).",
)

HOUSEHOLD_REGISTER = LicenceType(
    code=_A["公安部"] + "001",
    name="居民户口簿",
    defining_agency="公安部",
    holder_type=HolderCodeType.RESIDENT_ID,
    fields=(
        _f("户主姓名"),
        _f("户主公民身份号码", FieldKind.RESIDENT_ID),
        _f("户别", _C, choices=("家庭户", "集体户")),
        _f("户号", pattern=r"[0-9]{6,12}"),
        _f("住址", max_length=300),
        _f("成员人数", _I, required=False),
        _f("户口登记机关"),
    ),
    default_validity_years=None,
    number_field="户号",
    holder_field="户主公民身份号码",
)

MARRIAGE_CERTIFICATE = LicenceType(
    code=_A["民政部"] + "001",
    name="结婚证",
    defining_agency="民政部",
    holder_type=HolderCodeType.RESIDENT_ID,
    fields=(
        _f("持证人"),
        _f("登记日期", _D),
        _f("结婚证字号", pattern=r"J[0-9]{6}-[0-9]{4}-[0-9]{6}"),
        _f("男方姓名"),
        _f("男方身份证件号", FieldKind.RESIDENT_ID),
        _f("女方姓名"),
        _f("女方身份证件号", FieldKind.RESIDENT_ID),
        _f("登记机关"),
    ),
    default_validity_years=None,
    number_field="结婚证字号",
    notes="Each spouse holds one certificate; the holder is 持证人.",
)

DISABILITY_CERTIFICATE = LicenceType(
    code=_A["中国残疾人联合会"] + "001",
    name="残疾人证",
    defining_agency="中国残疾人联合会",
    holder_type=HolderCodeType.RESIDENT_ID,
    title="中华人民共和国残疾人证",
    fields=(
        _f("姓名"),
        _f("性别", _C, choices=_SEX),
        _f("残疾人证号", pattern=r"[0-9]{17}[0-9X][1-7][1-4]"),
        _f("残疾类别", _C, choices=("视力", "听力", "言语", "肢体", "智力", "精神", "多重")),
        _f("残疾等级", _C, choices=("一级", "二级", "三级", "四级")),
        _f("住址", required=False, max_length=300),
        _f("监护人", required=False),
        _f("发证机关"),
    ),
    default_validity_years=10,
    max_validity_years=10,
    valid_until_required=True,
    number_field="残疾人证号",
    notes="残疾人证号 = 公民身份号码 + 残疾类别 (1-7) + 残疾等级 (1-4).",
)

SOCIAL_SECURITY_CARD = LicenceType(
    code=_A["人力资源和社会保障部"] + "001",
    name="社会保障卡",
    defining_agency="人力资源和社会保障部",
    holder_type=HolderCodeType.RESIDENT_ID,
    title="中华人民共和国社会保障卡",
    fields=(
        _f("姓名"),
        _f("社会保障号码", FieldKind.RESIDENT_ID),
        _f("卡号", pattern=r"[A-Z0-9]{9}"),
        _f("发卡日期", _D),
        _f("发卡地区", pattern=r"[0-9]{6}"),
    ),
    default_validity_years=10,
    max_validity_years=10,
    valid_until_required=True,
    number_field="卡号",
    holder_field="社会保障号码",
)

DRUG_BUSINESS_PERMIT = LicenceType(
    code=_A["国家药品监督管理局"] + "001",
    name="药品经营许可证",
    defining_agency="国家药品监督管理局",
    holder_type=HolderCodeType.USCC,
    fields=(
        _f("企业名称"),
        _f("统一社会信用代码", FieldKind.USCC),
        _f("注册地址", max_length=300),
        _f("法定代表人"),
        _f("企业负责人"),
        _f("质量负责人"),
        _f("经营方式", _C, choices=("批发", "零售连锁", "零售")),
        _f("经营范围", max_length=MAX_TEXT),
        _f("仓库地址", required=False, max_length=300),
        _f("许可证编号", pattern=r"[\u4e00-\u9fff][A-Z]{2}[0-9]{7}"),
    ),
    default_validity_years=5,
    max_validity_years=5,
    valid_until_required=True,
    number_field="许可证编号",
    holder_field="统一社会信用代码",
)

BUILTIN_TYPES: tuple[LicenceType, ...] = (
    BUSINESS_LICENCE,
    FOOD_BUSINESS_PERMIT,
    ROAD_TRANSPORT_PERMIT,
    BIRTH_CERTIFICATE,
    HOUSEHOLD_REGISTER,
    MARRIAGE_CERTIFICATE,
    DISABILITY_CERTIFICATE,
    SOCIAL_SECURITY_CARD,
    DRUG_BUSINESS_PERMIT,
)
