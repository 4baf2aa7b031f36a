"""Lossless JSON form of the catalogue's stored values (what the SQL store keeps per row).

Stored data was validated when it was written, so decoding trusts it and
skips the validators (decoding 100,000 resources at start-up must be fast);
it still rebuilds every value through the domain types, so ``decode(encode(x)) == x``.
Keys are short but readable; datetimes are ISO 8601 with their UTC offset.

Example::

    >>> from datetime import UTC, datetime
    >>> from catalog_registry.codec import demand_from_json, demand_to_json
    >>> from catalog_registry.model import Demand, DemandSpec
    >>> spec = DemandSpec("114201000000301708", "武汉市市场监督管理局", "核验", "依据", "420100",
    ...                   wanted_text="营业执照信息")
    >>> d = Demand("dm-1", spec, datetime(2025, 1, 1, tzinfo=UTC), "clerk")
    >>> demand_from_json(demand_to_json(d)) == d
    True
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson

from catalog_registry.model import (
    DataItem,
    DataType,
    Demand,
    DemandSpec,
    Resource,
    ResourceClass,
    ResourceCode,
    ResourceFormat,
    ResourceSpec,
    ResourceStatus,
    ShareType,
    UpdateCycle,
)
from zhida.regions import Level

# Enum members by value: a dict lookup costs a tenth of calling the enum class.
_CLASS = {int(m): m for m in ResourceClass}
_DATA_TYPE = {m.value: m for m in DataType}
_SHARE = {m.value: m for m in ShareType}
_FORMAT = {m.value: m for m in ResourceFormat}
_CYCLE = {m.value: m for m in UpdateCycle}
_LEVEL = {int(m): m for m in Level}
_STATUS = {m.value: m for m in ResourceStatus}


def code_from_text(text: str) -> ResourceCode:
    """A canonical code text back to its value (no format checks: it came from storage)."""
    c, i, s, d, n = text.split("-")
    return ResourceCode(_CLASS[int(c)], int(i), int(s), int(d), int(n))


def code_key(code: ResourceCode | str) -> int:
    """The code as an order-preserving integer: ``1-01-001-0001-000001`` → 1010010001000001.

    Every segment has a fixed width, so integer order equals canonical text
    order; stores index this 16-digit number instead of the 20-character text.
    """
    text = code.text if isinstance(code, ResourceCode) else code
    return int(text.replace("-", ""))


def code_text(key: int) -> str:
    """Inverse of :func:`code_key`."""
    digits = f"{key:016d}"
    return f"{digits[0]}-{digits[1:3]}-{digits[3:6]}-{digits[6:10]}-{digits[10:]}"


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def spec_to_dict(spec: ResourceSpec) -> dict[str, Any]:
    return {
        "code": spec.code.text,
        "name": spec.name,
        "description": spec.description,
        "provider_code": spec.provider_code,
        "provider_name": spec.provider_name,
        "region_code": spec.region_code,
        "items": [
            [i.name, i.type.value, i.description, i.share_type.value if i.share_type else None]
            for i in spec.items
        ],
        "share_type": spec.share_type.value,
        "share_conditions": spec.share_conditions,
        "format": spec.format.value,
        "update_cycle": spec.update_cycle.value,
        "related_codes": [c.text for c in spec.related_codes],
        "delivery_service": spec.delivery_service,
    }


def spec_from_dict(data: dict[str, Any]) -> ResourceSpec:
    return ResourceSpec(
        code=code_from_text(data["code"]),
        name=data["name"],
        description=data["description"],
        provider_code=data["provider_code"],
        provider_name=data["provider_name"],
        region_code=data["region_code"],
        items=tuple(
            DataItem(name, _DATA_TYPE[type_], desc, _SHARE[share] if share else None)
            for name, type_, desc, share in data["items"]
        ),
        share_type=_SHARE[data["share_type"]],
        share_conditions=data["share_conditions"],
        format=_FORMAT[data["format"]],
        update_cycle=_CYCLE[data["update_cycle"]],
        related_codes=tuple(code_from_text(c) for c in data["related_codes"]),
        delivery_service=data["delivery_service"],
    )


def resource_to_json(resource: Resource) -> str:
    body = {
        "spec": spec_to_dict(resource.spec),
        "level": int(resource.level),
        "version": resource.version,
        "status": resource.status.value,
        "created_at": _time(resource.created_at),
        "updated_at": _time(resource.updated_at),
        "published_at": _time(resource.published_at),
        "retired_at": _time(resource.retired_at),
        "updated_by": resource.updated_by,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def resource_from_json(text: str) -> Resource:
    data = orjson.loads(text)
    created, updated = _parse_time(data["created_at"]), _parse_time(data["updated_at"])
    assert created is not None
    assert updated is not None
    return Resource(
        spec=spec_from_dict(data["spec"]),
        level=_LEVEL[data["level"]],
        version=data["version"],
        status=_STATUS[data["status"]],
        created_at=created,
        updated_at=updated,
        published_at=_parse_time(data["published_at"]),
        retired_at=_parse_time(data["retired_at"]),
        updated_by=data["updated_by"],
    )


def demand_to_json(demand: Demand) -> str:
    spec = demand.spec
    body = {
        "id": demand.id,
        "requester_code": spec.requester_code,
        "requester_name": spec.requester_name,
        "purpose": spec.purpose,
        "legal_basis": spec.legal_basis,
        "region_scope": spec.region_scope,
        "wanted_text": spec.wanted_text,
        "item_names": list(spec.item_names),
        "wanted_codes": [c.text for c in spec.wanted_codes],
        "matter": spec.matter,
        "filed_at": _time(demand.filed_at),
        "filed_by": demand.filed_by,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def demand_from_json(text: str) -> Demand:
    data = json.loads(text)
    spec = DemandSpec(
        requester_code=data["requester_code"],
        requester_name=data["requester_name"],
        purpose=data["purpose"],
        legal_basis=data["legal_basis"],
        region_scope=data["region_scope"],
        wanted_text=data["wanted_text"],
        item_names=tuple(data["item_names"]),
        wanted_codes=tuple(code_from_text(c) for c in data["wanted_codes"]),
        matter=data["matter"],
    )
    filed_at = _parse_time(data["filed_at"])
    assert filed_at is not None
    return Demand(data["id"], spec, filed_at, data["filed_by"])
