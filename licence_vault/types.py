"""Licence types (证照类型): the registry and the nine shipped types.

A :class:`LicenceType` (defined in :mod:`licence_vault.type_spec` with its
fields and data checking, re-exported here) has its GB/T 36904 type code (the
defining agency's USCC + a 3-digit sequence), a name, the defining agency,
the holder kind, the fields printed on its face, a validity rule and the
document layout. A :class:`TypeRegistry` finds the types a vault knows by
code or by name.

:data:`BUILTIN_TYPES` are the nine types of the "高效办成一件事" matters in the
seeds. The defining agencies' codes are *synthetic* (well-formed, valid check
characters, not the real registrations), like ``zhida.auth.mint.DEMO_ORGS``.

Example::

    >>> registry = TypeRegistry.builtin()
    >>> food = registry.by_name("食品经营许可证")
    >>> food.code
    '111000000000170137002'
    >>> food.default_validity_years
    5
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from licence_vault.holder import HolderCodeType
from licence_vault.type_spec import INVALID_DATA as INVALID_DATA
from licence_vault.type_spec import FieldKind, FieldSpec, LicenceType
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
