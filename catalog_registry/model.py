"""Domain types of the catalogue: resource codes, data items, resources, demands, negative entries.

All types are frozen dataclasses; the registry creates new values instead of
mutating. Nothing here knows about gRPC or SQL.

Resource codes (政务信息资源代码)
---------------------------------

The 编制指南 defines a code as class (类, 1 digit) + item (项, 2) + sub-item
(目, 3) + detail (细目) + sequence (顺序码), the last two of unspecified length.
zhida fixes the lengths so that every code has exactly one canonical text:

============  ======  =========================================================
segment       digits  rule
============  ======  =========================================================
class         1       1 基础 (basic), 2 主题 (theme), 3 部门 (department)
item          2       01-99
sub-item      3       001-999
detail        4       0000-9999 (0000: no detail level)
sequence      6       000001-999999
============  ======  =========================================================

Canonical form ``1-01-001-0001-000001`` (hyphens). :meth:`ResourceCode.parse`
also accepts the undelimited 16-digit form ``1010010001000001`` and the
指南's "前段码/后段码" form ``1010010001/000001``; both normalise to the
canonical text, which is what stores persist and APIs return.

Example::

    >>> from catalog_registry.model import ResourceCode, ResourceClass
    >>> code = ResourceCode.parse("1010010001/000001")
    >>> code.text, code.resource_class is ResourceClass.BASIC
    ('1-01-001-0001-000001', True)
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

from zhida.errors import FieldViolation, InvalidArgument
from zhida.regions import Level


class ResourceClass(enum.IntEnum):
    """Top-level class of a resource code (the first digit)."""

    BASIC = 1  # 基础信息资源
    THEME = 2  # 主题信息资源
    DEPARTMENT = 3  # 部门信息资源

    @property
    def label(self) -> str:
        return {1: "基础", 2: "主题", 3: "部门"}[self.value]


_CANONICAL = re.compile(r"([0-9])-([0-9]{2})-([0-9]{3})-([0-9]{4})-([0-9]{6})")
_SLASHED = re.compile(r"([0-9])([0-9]{2})([0-9]{3})([0-9]{4})/([0-9]{6})")
_COMPACT = re.compile(r"([0-9])([0-9]{2})([0-9]{3})([0-9]{4})([0-9]{6})")
_SEGMENTS = ("class", "item", "sub-item", "detail", "sequence")
_WIDTHS = (1, 2, 3, 4, 6)
CODE_FORMAT_HELP = (
    "expected class-item-subitem-detail-sequence as 1-01-001-0001-000001 "
    "(or 1010010001000001, or 1010010001/000001)"
)


@dataclass(frozen=True, slots=True, order=True)
class ResourceCode:
    """A validated resource code; construct with :meth:`parse` or the fields directly."""

    resource_class: ResourceClass
    item: int
    sub_item: int
    detail: int
    sequence: int

    def __post_init__(self) -> None:
        problems = _segment_problems(
            (int(self.resource_class), self.item, self.sub_item, self.detail, self.sequence)
        )
        if problems:
            raise InvalidArgument(
                "invalid resource code",
                reason="INVALID_RESOURCE_CODE",
                violations=[FieldViolation("code", p) for p in problems],
            )

    @property
    def text(self) -> str:
        """Canonical text, ``1-01-001-0001-000001``."""
        return (
            f"{int(self.resource_class)}-{self.item:02d}-{self.sub_item:03d}"
            f"-{self.detail:04d}-{self.sequence:06d}"
        )

    def __str__(self) -> str:
        return self.text

    @classmethod
    def check(
        cls, text: str, field: str = "code"
    ) -> tuple[ResourceCode | None, list[FieldViolation]]:
        """Parse ``text``; return the code or every problem found, each on ``field``."""
        raw = text.strip() if isinstance(text, str) else ""
        if not raw:
            return None, [FieldViolation(field, f"resource code is required; {CODE_FORMAT_HELP}")]
        match = _CANONICAL.fullmatch(raw) or _SLASHED.fullmatch(raw) or _COMPACT.fullmatch(raw)
        if match is None:
            problem = f"{raw!r} is not a resource code; {CODE_FORMAT_HELP}"
            return None, [FieldViolation(field, problem)]
        c, i, s, d, n = (int(g) for g in match.groups())
        values = (c, i, s, d, n)
        problems = _segment_problems(values)
        if problems:
            return None, [FieldViolation(field, p) for p in problems]
        return (
            cls(ResourceClass(values[0]), values[1], values[2], values[3], values[4]),
            [],
        )

    @classmethod
    def parse(cls, text: str, field: str = "code") -> ResourceCode:
        """Parse ``text`` or raise InvalidArgument (reason INVALID_RESOURCE_CODE)."""
        code, violations = cls.check(text, field)
        if code is None:
            raise InvalidArgument(
                f"invalid resource code {text!r}",
                reason="INVALID_RESOURCE_CODE",
                violations=violations,
            )
        return code


def _segment_problems(values: tuple[int, int, int, int, int]) -> list[str]:
    problems: list[str] = []
    cls_, item, sub, detail, seq = values
    if cls_ not in (1, 2, 3):
        problems.append(f"class (segment 1) must be 1 基础, 2 主题 or 3 部门, got {cls_}")
    if not 1 <= item <= 99:
        problems.append(f"item (segment 2) must be 01-99, got {item:02d}")
    if not 1 <= sub <= 999:
        problems.append(f"sub-item (segment 3) must be 001-999, got {sub:03d}")
    if not 0 <= detail <= 9999:
        problems.append(f"detail (segment 4) must be 0000-9999, got {detail}")
    if not 1 <= seq <= 999_999:
        problems.append(f"sequence (segment 5) must be 000001-999999, got {seq:06d}")
    return problems


class DataType(enum.Enum):
    """The closed set of data-item types."""

    STRING = "string"
    INTEGER = "integer"
    DECIMAL = "decimal"
    DATE = "date"
    DATETIME = "datetime"
    BOOLEAN = "boolean"
    CODE = "code"  # a value from a code table (e.g. GB/T 2261 sex code)
    BINARY = "binary"


class ShareType(enum.Enum):
    """共享类型. ``rank`` orders them from most to least open."""

    UNCONDITIONAL = "unconditional"  # 无条件共享
    CONDITIONAL = "conditional"  # 有条件共享
    NOT_SHARED = "not_shared"  # 不予共享

    @property
    def label(self) -> str:
        return _SHARE_LABELS[self]

    @property
    def rank(self) -> int:
        return {"unconditional": 0, "conditional": 1, "not_shared": 2}[self.value]


_SHARE_LABELS = {
    ShareType.UNCONDITIONAL: "无条件共享",
    ShareType.CONDITIONAL: "有条件共享",
    ShareType.NOT_SHARED: "不予共享",
}


class ResourceStatus(enum.Enum):
    """Lifecycle: DRAFT → PUBLISHED → RETIRED, nothing else."""

    DRAFT = "draft"
    PUBLISHED = "published"
    RETIRED = "retired"


class ResourceFormat(enum.Enum):
    """信息资源格式."""

    DATABASE = "database"  # 数据库
    SPREADSHEET = "spreadsheet"  # 电子表格
    DOCUMENT = "document"  # 电子文件 (OFD, PDF)
    IMAGE = "image"  # 图形图像
    STREAM = "stream"  # 流媒体
    API = "api"  # 接口


class UpdateCycle(enum.Enum):
    """更新周期."""

    REALTIME = "realtime"  # 实时
    DAILY = "daily"  # 每日
    WEEKLY = "weekly"  # 每周
    MONTHLY = "monthly"  # 每月
    QUARTERLY = "quarterly"  # 每季度
    YEARLY = "yearly"  # 每年
    IRREGULAR = "irregular"  # 不定期


@dataclass(frozen=True, slots=True)
class DataItem:
    """信息项. ``share_type`` None inherits the resource's; set, it may only be stricter."""

    name: str
    type: DataType
    description: str = ""
    share_type: ShareType | None = None


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    """What a provider department declares about a resource (the supply-list entry).

    ``delivery_service`` names the interface that delivers the data (e.g. an
    exchange service method or the provider's API id); empty until there is one.
    """

    code: ResourceCode
    name: str
    description: str
    provider_code: str  # USCC of the provider department
    provider_name: str
    region_code: str  # GB/T 2260 (or 100000 national)
    items: tuple[DataItem, ...]
    share_type: ShareType
    share_conditions: str = ""
    format: ResourceFormat = ResourceFormat.DATABASE
    update_cycle: UpdateCycle = UpdateCycle.IRREGULAR
    related_codes: tuple[ResourceCode, ...] = ()
    delivery_service: str = ""


@dataclass(frozen=True, slots=True)
class Resource:
    """One stored version of a resource: the spec plus lifecycle state.

    ``version`` starts at 1 and increments on every change (content or status),
    so the history is the complete list of snapshots.
    """

    spec: ResourceSpec
    level: Level
    version: int
    status: ResourceStatus
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None = None
    retired_at: datetime | None = None
    updated_by: str = ""

    @property
    def code(self) -> ResourceCode:
        return self.spec.code

    @property
    def key(self) -> str:
        """Canonical code text; the key stores and indexes use."""
        return self.spec.code.text

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def provider_code(self) -> str:
        return self.spec.provider_code

    @property
    def provider_name(self) -> str:
        return self.spec.provider_name

    @property
    def region_code(self) -> str:
        return self.spec.region_code

    @property
    def share_type(self) -> ShareType:
        return self.spec.share_type

    @property
    def items(self) -> tuple[DataItem, ...]:
        return self.spec.items

    def item_share_type(self, item: DataItem) -> ShareType:
        """The effective share type of ``item`` (its own, else the resource's)."""
        return item.share_type or self.spec.share_type


@dataclass(frozen=True, slots=True)
class DemandSpec:
    """A 需求清单 entry as filed: who wants what, why, on which legal basis."""

    requester_code: str  # USCC of the requesting department
    requester_name: str
    purpose: str
    legal_basis: str
    region_scope: str  # region the data is needed for
    wanted_text: str = ""
    item_names: tuple[str, ...] = ()
    wanted_codes: tuple[ResourceCode, ...] = ()
    matter: str = ""  # the "一件事" it serves, e.g. 新生儿出生


@dataclass(frozen=True, slots=True)
class Demand:
    """A filed demand."""

    id: str
    spec: DemandSpec
    filed_at: datetime
    filed_by: str  # principal subject

    @property
    def requester_code(self) -> str:
        return self.spec.requester_code

    @property
    def region_scope(self) -> str:
        return self.spec.region_scope


@dataclass(frozen=True, slots=True)
class NegativeEntry:
    """负面清单 entry: a resource (every item when ``item_names`` is empty) never released."""

    resource_code: ResourceCode
    item_names: tuple[str, ...]
    legal_basis: str
    added_by: str
    added_at: datetime

    @property
    def whole_resource(self) -> bool:
        return not self.item_names


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the change feed: a resource snapshot written at ``sequence``.

    ``origin_region``/``origin_sequence`` identify where the change was first
    made; None for changes made on this node (the feed fills in the node's
    region and ``sequence`` when exporting). A change of the resource's
    negative-list entries is a change of its current version (same snapshot).
    ``negative_entries``: the resource's entries when the change was exported
    (:meth:`~catalog_registry.federation.Federation.export_changes` fills them
    in; the store's own feed leaves them empty).
    """

    sequence: int
    resource: Resource
    origin_region: str | None = None
    origin_sequence: int | None = None
    negative_entries: tuple[NegativeEntry, ...] = ()
