"""Validation of catalogue input: every problem becomes a FieldViolation, raised together.

Two layers:

* ``parse_*`` turn loosely typed input (a JSON object, a CSV row, a decoded
  protobuf message as a dict) into domain types, collecting violations for
  each field (``code``, ``share_type``, ``items[2].type`` …);
* ``validate_*`` check typed values (USCC check character, region code,
  non-empty unique item names, share conditions, legal bases).

``check_*`` / ``parse_resource`` raise one :class:`InvalidArgument` carrying all
violations (reason ``INVALID_RESOURCE``, ``INVALID_DEMAND``,
``INVALID_NEGATIVE_ENTRY``).

Example::

    >>> from catalog_registry.validation import parse_resource
    >>> try:
    ...     parse_resource({"code": "9-01-001-0001-000001", "name": "",
    ...                     "provider_code": "bad", "region_code": "420102",
    ...                     "share_type": "无条件共享", "items": []})
    ... except Exception as e:
    ...     print(e.reason, sorted(v.field for v in e.violations))
    INVALID_RESOURCE ['code', 'items', 'name', 'provider_code', 'provider_name']
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import TypeVar

from stdnum.cn import uscc

from catalog_registry.model import (
    DataItem,
    DataType,
    DemandSpec,
    ResourceCode,
    ResourceFormat,
    ResourceSpec,
    ShareType,
    UpdateCycle,
)
from zhida.errors import FieldViolation, InvalidArgument
from zhida.regions import RegionCodeError, parse_region

MAX_NAME = 200
MAX_TEXT = 4000
MAX_ITEMS = 1000

# Keys a resource row may carry that describe stored state; parse_resource ignores them.
READ_ONLY_KEYS = frozenset(
    {
        "level",
        "version",
        "status",
        "created_at",
        "updated_at",
        "published_at",
        "retired_at",
        "updated_by",
    }
)
RESOURCE_KEYS = frozenset(
    {
        "code",
        "name",
        "description",
        "provider_code",
        "provider_name",
        "region_code",
        "items",
        "share_type",
        "share_conditions",
        "format",
        "update_cycle",
        "related_codes",
        "delivery_service",
    }
)

E = TypeVar("E", bound=enum.Enum)

_SHARE_ALIASES = {
    "无条件共享": ShareType.UNCONDITIONAL,
    "有条件共享": ShareType.CONDITIONAL,
    "不予共享": ShareType.NOT_SHARED,
}


def uscc_violations(value: str, field: str) -> list[FieldViolation]:
    """Problems with a unified social credit code (GB 32100), checked with stdnum."""
    if not value:
        return [FieldViolation(field, "unified social credit code (USCC) is required")]
    try:
        compact = uscc.validate(value)
    except uscc.InvalidLength:
        return [FieldViolation(field, f"USCC must have 18 characters, got {len(value)}")]
    except uscc.InvalidChecksum:
        return [FieldViolation(field, f"USCC {value!r} has a wrong check character")]
    except uscc.ValidationError:
        return [FieldViolation(field, f"USCC {value!r} is malformed (GB 32100)")]
    if compact != value:
        return [FieldViolation(field, f"USCC must be written compactly in capitals: {compact}")]
    return []


def region_violations(value: str, field: str) -> list[FieldViolation]:
    try:
        parse_region(value)
    except RegionCodeError as exc:
        return [FieldViolation(field, str(exc))]
    return []


def text_violations(value: str, field: str, *, required: bool, limit: int) -> list[FieldViolation]:
    if required and not value.strip():
        return [FieldViolation(field, "must not be empty")]
    if value != value.strip():
        return [FieldViolation(field, "must not start or end with whitespace")]
    if len(value) > limit:
        return [FieldViolation(field, f"must be at most {limit} characters, got {len(value)}")]
    return []


def parse_enum(
    enum_type: type[E], value: object, field: str, out: list[FieldViolation]
) -> E | None:
    """Accept an enum member, its value, or its name (any case); else record a violation."""
    if isinstance(value, enum_type):
        return value
    if isinstance(value, str):
        key = value.strip()
        if enum_type is ShareType and key in _SHARE_ALIASES:
            return _SHARE_ALIASES[key]  # type: ignore[return-value]
        for member in enum_type:
            if key.lower() in (str(member.value).lower(), member.name.lower()):
                return member
    allowed = ", ".join(str(m.value) for m in enum_type)
    out.append(FieldViolation(field, f"{value!r} is not one of: {allowed}"))
    return None


def validate_items(items: Sequence[DataItem], share_type: ShareType | None) -> list[FieldViolation]:
    """Non-empty, unique, sound item names; item share types no looser than the resource's."""
    out: list[FieldViolation] = []
    if not items:
        out.append(FieldViolation("items", "a resource needs at least one data item"))
    if len(items) > MAX_ITEMS:
        out.append(FieldViolation("items", f"at most {MAX_ITEMS} data items"))
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        path = f"items[{i}]"
        out += text_violations(item.name, f"{path}.name", required=True, limit=MAX_NAME)
        if item.name in seen:
            out.append(FieldViolation(f"{path}.name", f"duplicate of items[{seen[item.name]}]"))
        seen.setdefault(item.name, i)
        out += text_violations(
            item.description, f"{path}.description", required=False, limit=MAX_TEXT
        )
        if (
            share_type is not None
            and item.share_type is not None
            and item.share_type.rank < share_type.rank
        ):
            out.append(
                FieldViolation(
                    f"{path}.share_type",
                    f"{item.share_type.value} is looser than the resource's {share_type.value}",
                )
            )
    return out


def _content_violations(
    fields: Mapping[str, str], items: Sequence[DataItem], share_type: ShareType | None
) -> list[FieldViolation]:
    out = text_violations(fields["name"], "name", required=True, limit=MAX_NAME)
    out += text_violations(fields["description"], "description", required=False, limit=MAX_TEXT)
    out += uscc_violations(fields["provider_code"], "provider_code")
    out += text_violations(fields["provider_name"], "provider_name", required=True, limit=MAX_NAME)
    out += region_violations(fields["region_code"], "region_code")
    out += validate_items(items, share_type)
    conditions = fields["share_conditions"]
    if share_type not in (None, ShareType.UNCONDITIONAL) and not conditions.strip():
        assert share_type is not None
        what = "conditions" if share_type is ShareType.CONDITIONAL else "the legal basis"
        out.append(FieldViolation("share_conditions", f"{share_type.label} needs {what} stated"))
    else:
        out += text_violations(conditions, "share_conditions", required=False, limit=MAX_TEXT)
    out += text_violations(
        fields["delivery_service"], "delivery_service", required=False, limit=MAX_NAME
    )
    return out


_TEXT_FIELDS = (
    "name",
    "description",
    "provider_code",
    "provider_name",
    "region_code",
    "share_conditions",
    "delivery_service",
)


def validate_spec(spec: ResourceSpec) -> list[FieldViolation]:
    """Every problem with a typed resource spec."""
    fields = {k: getattr(spec, k) for k in _TEXT_FIELDS}
    out = _content_violations(fields, spec.items, spec.share_type)
    for i, related in enumerate(spec.related_codes):
        if related == spec.code:
            out.append(FieldViolation(f"related_codes[{i}]", "a resource cannot relate to itself"))
    return out


def check_spec(spec: ResourceSpec) -> None:
    violations = validate_spec(spec)
    if violations:
        raise InvalidArgument(
            f"invalid resource {spec.code.text}", reason="INVALID_RESOURCE", violations=violations
        )


def _str(data: Mapping[str, object], key: str, out: list[FieldViolation]) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        out.append(FieldViolation(key, f"must be a string, got {type(value).__name__}"))
        return ""
    return value


def _parse_items(raw: object, out: list[FieldViolation]) -> tuple[DataItem, ...]:
    if not isinstance(raw, list | tuple):
        out.append(FieldViolation("items", "must be a list of data items"))
        return ()
    items: list[DataItem] = []
    for i, entry in enumerate(raw):
        path = f"items[{i}]"
        if isinstance(entry, DataItem):
            items.append(entry)
            continue
        if not isinstance(entry, Mapping):
            out.append(FieldViolation(path, "must be an object with name and type"))
            continue
        name = _str(entry, "name", out)
        dtype = parse_enum(DataType, entry.get("type"), f"{path}.type", out)
        desc = entry.get("description") or ""
        share_raw = entry.get("share_type")
        share = (
            parse_enum(ShareType, share_raw, f"{path}.share_type", out)
            if share_raw not in (None, "")
            else None
        )
        # With a bad type, keep the item (as a string) so its name is still checked.
        items.append(DataItem(name, dtype or DataType.STRING, str(desc), share))
    return tuple(items)


def parse_resource_row(
    data: Mapping[str, object],
) -> tuple[ResourceSpec | None, list[FieldViolation]]:
    """Turn one loosely typed row into a spec, or return every violation found."""
    out: list[FieldViolation] = []
    for key in sorted(set(data) - RESOURCE_KEYS - READ_ONLY_KEYS):
        out.append(FieldViolation(key, "unknown field"))
    code, code_problems = ResourceCode.check(_str(data, "code", out), "code")
    out += code_problems
    share = parse_enum(ShareType, data.get("share_type"), "share_type", out)
    fmt_raw, cycle_raw = data.get("format") or "database", data.get("update_cycle") or "irregular"
    fmt = parse_enum(ResourceFormat, fmt_raw, "format", out)
    cycle = parse_enum(UpdateCycle, cycle_raw, "update_cycle", out)
    items = _parse_items(data.get("items", []), out)
    related: list[ResourceCode] = []
    raw_related = data.get("related_codes") or []
    if not isinstance(raw_related, list | tuple):
        out.append(FieldViolation("related_codes", "must be a list of resource codes"))
        raw_related = []
    for i, text in enumerate(raw_related):
        rc, problems = ResourceCode.check(str(text), f"related_codes[{i}]")
        out += problems
        if rc is not None:
            related.append(rc)
    fields = {k: _str(data, k, out) for k in _TEXT_FIELDS}
    if code is None or share is None or fmt is None or cycle is None:
        out += _content_violations(fields, items, share)  # what can be checked without a spec
        return None, _dedupe(out)
    spec = ResourceSpec(
        code=code,
        name=fields["name"],
        description=fields["description"],
        provider_code=fields["provider_code"],
        provider_name=fields["provider_name"],
        region_code=fields["region_code"],
        items=items,
        share_type=share,
        share_conditions=fields["share_conditions"],
        format=fmt,
        update_cycle=cycle,
        related_codes=tuple(related),
        delivery_service=fields["delivery_service"],
    )
    out += validate_spec(spec)
    return (None if out else spec), _dedupe(out)


def parse_resource(data: Mapping[str, object]) -> ResourceSpec:
    """:func:`parse_resource_row` raising InvalidArgument (reason INVALID_RESOURCE)."""
    spec, violations = parse_resource_row(data)
    if spec is None:
        raise InvalidArgument("invalid resource", reason="INVALID_RESOURCE", violations=violations)
    return spec


def _dedupe(violations: list[FieldViolation]) -> list[FieldViolation]:
    return list(dict.fromkeys(violations))


def validate_demand(spec: DemandSpec) -> list[FieldViolation]:
    out = uscc_violations(spec.requester_code, "requester_code")
    out += text_violations(spec.requester_name, "requester_name", required=True, limit=MAX_NAME)
    out += text_violations(spec.purpose, "purpose", required=True, limit=MAX_TEXT)
    out += text_violations(spec.legal_basis, "legal_basis", required=True, limit=MAX_TEXT)
    out += region_violations(spec.region_scope, "region_scope")
    out += text_violations(spec.wanted_text, "wanted_text", required=False, limit=MAX_TEXT)
    if not (spec.wanted_text.strip() or spec.item_names or spec.wanted_codes):
        out.append(
            FieldViolation("wanted_text", "say what is wanted: text, item names or resource codes")
        )
    for i, name in enumerate(spec.item_names):
        out += text_violations(name, f"item_names[{i}]", required=True, limit=MAX_NAME)
    return out


def check_demand(spec: DemandSpec) -> None:
    violations = validate_demand(spec)
    if violations:
        raise InvalidArgument("invalid demand", reason="INVALID_DEMAND", violations=violations)


def check_negative_entry(legal_basis: str, item_names: Sequence[str]) -> None:
    """A negative-list entry must cite its legal basis; item names must be sound."""
    out = text_violations(legal_basis, "legal_basis", required=True, limit=MAX_TEXT)
    if not legal_basis.strip():
        out = [
            FieldViolation(
                "legal_basis", "a negative-list entry must cite its legal basis (法律依据)"
            )
        ]
    seen: set[str] = set()
    for i, name in enumerate(item_names):
        out += text_violations(name, f"item_names[{i}]", required=True, limit=MAX_NAME)
        if name in seen:
            out.append(FieldViolation(f"item_names[{i}]", "duplicate item name"))
        seen.add(name)
    if out:
        raise InvalidArgument(
            "invalid negative-list entry", reason="INVALID_NEGATIVE_ENTRY", violations=out
        )
