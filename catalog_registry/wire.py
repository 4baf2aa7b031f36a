"""Protobuf ⇄ domain for ``zhida.catalog.v1`` (the only module that knows both).

Incoming messages become loosely typed rows for the domain's own parsers
(:func:`catalog_registry.validation.parse_resource_row`), so a wire request
and a CSV row are validated by the same code and report the same field
paths (``code``, ``items[2].type``, ``share_type``). Enum values outside the
proto's set, and ``*_UNSPECIFIED`` where a value is required, become field
violations, never silent defaults.

Example::

    >>> from catalog_registry import wire
    >>> from zhida.catalog.v1 import catalog_service_pb2 as pb
    >>> try:
    ...     wire.spec_from_pb(pb.ResourceSpec(code="9-99"))
    ... except Exception as e:
    ...     print(e.reason, "code" in [v.field for v in e.violations])
    INVALID_RESOURCE True
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from catalog_registry.coverage import CoverageRow
from catalog_registry.federation import ImportOutcome, ImportResult
from catalog_registry.matching import Candidate, DemandMatch, MatchReason
from catalog_registry.model import (
    Change,
    DataItem,
    DataType,
    Demand,
    DemandSpec,
    NegativeEntry,
    Resource,
    ResourceCode,
    ResourceFormat,
    ResourceSpec,
    ResourceStatus,
    ShareType,
    UpdateCycle,
)
from catalog_registry.search import SearchRequest
from catalog_registry.supply import SupplyEntry
from catalog_registry.validation import parse_resource_row
from zhida.catalog.v1 import catalog_service_pb2 as pb
from zhida.errors import FieldViolation, InvalidArgument
from zhida.regions import Level

E = TypeVar("E", bound=enum.Enum)


class EnumBridge(Generic[E]):
    """A proto enum (``PREFIX_NAME`` values) and the domain enum with the same member names."""

    def __init__(self, wrapper: Any, prefix: str, domain: type[E]) -> None:
        self.wrapper = wrapper
        self.prefix = prefix
        self.to_pb: dict[E, int] = {m: int(wrapper.Value(prefix + m.name)) for m in domain}
        self.from_pb: dict[int, E] = {v: m for m, v in self.to_pb.items()}

    def name(self, number: int) -> str:
        """The proto name of ``number`` (or the number itself when the enum has none)."""
        try:
            return str(self.wrapper.Name(number))
        except ValueError:
            return str(number)

    def text(self, number: int) -> str:
        """What the domain parsers read: the member's value, else the proto name (refused)."""
        member = self.from_pb.get(number)
        return self.name(number) if member is None else str(member.value)

    def get(
        self, number: int, field: str, out: list[FieldViolation], *, optional: bool
    ) -> E | None:
        """The member for ``number``; UNSPECIFIED is None when optional; else a violation."""
        if number == 0 and optional:
            return None
        member = self.from_pb.get(number)
        if member is None:
            allowed = ", ".join(self.prefix + m.name for m in self.to_pb)
            out.append(FieldViolation(field, f"{self.name(number)} is not one of: {allowed}"))
        return member


LEVEL = EnumBridge(pb.Level, "LEVEL_", Level)
SHARE = EnumBridge(pb.ShareType, "SHARE_TYPE_", ShareType)
STATUS = EnumBridge(pb.ResourceStatus, "RESOURCE_STATUS_", ResourceStatus)
DATA_TYPE = EnumBridge(pb.DataType, "DATA_TYPE_", DataType)
FORMAT = EnumBridge(pb.ResourceFormat, "RESOURCE_FORMAT_", ResourceFormat)
CYCLE = EnumBridge(pb.UpdateCycle, "UPDATE_CYCLE_", UpdateCycle)
REASON = EnumBridge(pb.MatchReason, "MATCH_REASON_", MatchReason)
OUTCOME = EnumBridge(pb.ImportOutcome, "IMPORT_OUTCOME_", ImportOutcome)


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    out = Timestamp()
    out.FromDatetime(value)
    return out


def time_of(message: Any, field: str) -> datetime | None:
    """The aware UTC datetime of ``message.field``, or None when unset."""
    if not message.HasField(field):
        return None
    value: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return value


def raise_if(violations: list[FieldViolation], message: str, reason: str) -> None:
    if violations:
        raise InvalidArgument(message, reason=reason, violations=violations)


# -- resources -------------------------------------------------------------------------------
def spec_row(msg: pb.ResourceSpec) -> dict[str, object]:
    """The spec as the row :func:`parse_resource_row` reads (enums as their domain values)."""
    return {
        "code": msg.code,
        "name": msg.name,
        "description": msg.description,
        "provider_code": msg.provider_code,
        "provider_name": msg.provider_name,
        "region_code": msg.region_code,
        "items": [
            {
                "name": i.name,
                "type": DATA_TYPE.text(i.type),
                "description": i.description,
                "share_type": SHARE.text(i.share_type) if i.share_type else None,
            }
            for i in msg.items
        ],
        "share_type": SHARE.text(msg.share_type),
        "share_conditions": msg.share_conditions,
        "format": FORMAT.text(msg.format) if msg.format else "database",
        "update_cycle": CYCLE.text(msg.update_cycle) if msg.update_cycle else "irregular",
        "related_codes": list(msg.related_codes),
        "delivery_service": msg.delivery_service,
    }


def spec_from_pb(msg: pb.ResourceSpec) -> ResourceSpec:
    """Validate and convert; ``InvalidArgument`` (INVALID_RESOURCE) lists every bad field."""
    spec, violations = parse_resource_row(spec_row(msg))
    if spec is None:
        raise InvalidArgument("invalid resource", reason="INVALID_RESOURCE", violations=violations)
    return spec


def spec_to_pb(spec: ResourceSpec) -> pb.ResourceSpec:
    return pb.ResourceSpec(
        code=spec.code.text,
        name=spec.name,
        description=spec.description,
        provider_code=spec.provider_code,
        provider_name=spec.provider_name,
        region_code=spec.region_code,
        items=[item_to_pb(i) for i in spec.items],
        share_type=SHARE.to_pb[spec.share_type],  # type: ignore[arg-type]
        share_conditions=spec.share_conditions,
        format=FORMAT.to_pb[spec.format],  # type: ignore[arg-type]
        update_cycle=CYCLE.to_pb[spec.update_cycle],  # type: ignore[arg-type]
        related_codes=[c.text for c in spec.related_codes],
        delivery_service=spec.delivery_service,
    )


def item_to_pb(item: DataItem) -> pb.DataItem:
    share = 0 if item.share_type is None else SHARE.to_pb[item.share_type]
    return pb.DataItem(
        name=item.name,
        type=DATA_TYPE.to_pb[item.type],  # type: ignore[arg-type]
        description=item.description,
        share_type=share,  # type: ignore[arg-type]
    )


def resource_to_pb(r: Resource) -> pb.Resource:
    return pb.Resource(
        spec=spec_to_pb(r.spec),
        level=LEVEL.to_pb[r.level],  # type: ignore[arg-type]
        version=r.version,
        status=STATUS.to_pb[r.status],  # type: ignore[arg-type]
        created_at=timestamp(r.created_at),
        updated_at=timestamp(r.updated_at),
        published_at=timestamp(r.published_at),
        retired_at=timestamp(r.retired_at),
        updated_by=r.updated_by,
    )


def resource_from_pb(msg: pb.Resource, path: str) -> Resource:
    """A full stored version (federation imports); violations are prefixed with ``path``."""
    out: list[FieldViolation] = []
    spec, problems = parse_resource_row(spec_row(msg.spec))
    out += [FieldViolation(f"{path}.spec.{v.field}", v.description) for v in problems]
    level = LEVEL.get(msg.level, f"{path}.level", out, optional=False)
    status = STATUS.get(msg.status, f"{path}.status", out, optional=False)
    created, updated = time_of(msg, "created_at"), time_of(msg, "updated_at")
    if created is None or updated is None:
        out.append(FieldViolation(f"{path}.created_at", "created_at and updated_at are required"))
    raise_if(out, "invalid change", "INVALID_CHANGE")
    if spec is None or level is None or status is None or created is None or updated is None:
        raise AssertionError("unreachable: violations were raised above")
    return Resource(
        spec,
        level,
        int(msg.version),
        status,
        created,
        updated,
        published_at=time_of(msg, "published_at"),
        retired_at=time_of(msg, "retired_at"),
        updated_by=msg.updated_by,
    )


def change_to_pb(change: Change) -> pb.Change:
    return pb.Change(
        sequence=change.sequence,
        resource=resource_to_pb(change.resource),
        origin_region=change.origin_region or "",
        origin_sequence=change.origin_sequence or 0,
        negative_entries=[negative_to_pb(e) for e in change.negative_entries],
    )


def changes_from_pb(messages: Iterable[pb.Change]) -> list[Change]:
    return [
        Change(
            m.sequence,
            resource_from_pb(m.resource, f"changes[{i}].resource"),
            m.origin_region or None,
            m.origin_sequence or None,
            tuple(
                negative_from_pb(e, f"changes[{i}].negative_entries[{j}]")
                for j, e in enumerate(m.negative_entries)
            ),
        )
        for i, m in enumerate(messages)
    ]


def negative_from_pb(msg: pb.NegativeEntry, path: str) -> NegativeEntry:
    """An entry as another node stored it (federation imports); the domain checks the rest."""
    out: list[FieldViolation] = []
    code, problems = ResourceCode.check(msg.resource_code, f"{path}.resource_code")
    out += problems
    added_at = time_of(msg, "added_at")
    if added_at is None:
        out.append(FieldViolation(f"{path}.added_at", "added_at is required"))
    raise_if(out, "invalid change", "INVALID_CHANGE")
    if code is None or added_at is None:
        raise AssertionError("unreachable: violations were raised above")
    return NegativeEntry(code, tuple(msg.item_names), msg.legal_basis, msg.added_by, added_at)


def import_result_to_pb(r: ImportResult) -> pb.ImportResult:
    return pb.ImportResult(
        origin_region=r.origin_region,
        origin_sequence=r.origin_sequence,
        code=r.code,
        outcome=OUTCOME.to_pb[r.outcome],  # type: ignore[arg-type]
        reason=r.reason,
    )


def search_from_pb(msg: pb.SearchResourcesRequest) -> SearchRequest:
    out: list[FieldViolation] = []
    level = LEVEL.get(msg.level, "level", out, optional=True)
    share = SHARE.get(msg.share_type, "share_type", out, optional=True)
    statuses = [
        STATUS.get(s, f"statuses[{i}]", out, optional=False) for i, s in enumerate(msg.statuses)
    ]
    raise_if(out, "invalid search", "INVALID_SEARCH")
    return SearchRequest(
        keywords=msg.keywords,
        provider_code=msg.provider_code or None,
        region_code=msg.region_code or None,
        include_subregions=msg.include_subregions,
        level=level,
        share_type=share,
        statuses=tuple(s for s in statuses if s is not None) or (ResourceStatus.PUBLISHED,),
        page_size=msg.page_size,
        page_token=msg.page_token,
    )


def statuses_from_pb(values: Iterable[int]) -> tuple[ResourceStatus, ...]:
    out: list[FieldViolation] = []
    found = [STATUS.get(s, f"statuses[{i}]", out, optional=False) for i, s in enumerate(values)]
    raise_if(out, "invalid statuses", "INVALID_ARGUMENT")
    return tuple(s for s in found if s is not None) or (ResourceStatus.PUBLISHED,)


def supply_to_pb(e: SupplyEntry) -> pb.SupplyEntry:
    spec = e.resource.spec
    return pb.SupplyEntry(
        code=spec.code.text,
        name=spec.name,
        provider_code=spec.provider_code,
        provider_name=spec.provider_name,
        region_code=spec.region_code,
        share_type=SHARE.to_pb[spec.share_type],  # type: ignore[arg-type]
        share_conditions=spec.share_conditions,
        offered_items=[item_to_pb(i) for i in e.offered],
        withheld_items=list(e.withheld),
        delivery_service=spec.delivery_service,
        update_cycle=CYCLE.to_pb[spec.update_cycle],  # type: ignore[arg-type]
    )


# -- demands and the negative list -----------------------------------------------------------
def demand_spec_from_pb(msg: pb.DemandSpec) -> DemandSpec:
    """Convert (codes parsed here; every other field is checked by the registry)."""
    out: list[FieldViolation] = []
    codes: list[ResourceCode] = []
    for i, text in enumerate(msg.wanted_codes):
        code, problems = ResourceCode.check(text, f"wanted_codes[{i}]")
        out += problems
        if code is not None:
            codes.append(code)
    raise_if(out, "invalid demand", "INVALID_DEMAND")
    return DemandSpec(
        requester_code=msg.requester_code,
        requester_name=msg.requester_name,
        purpose=msg.purpose,
        legal_basis=msg.legal_basis,
        region_scope=msg.region_scope,
        wanted_text=msg.wanted_text,
        item_names=tuple(msg.item_names),
        wanted_codes=tuple(codes),
        matter=msg.matter,
    )


def demand_spec_to_pb(s: DemandSpec) -> pb.DemandSpec:
    return pb.DemandSpec(
        requester_code=s.requester_code,
        requester_name=s.requester_name,
        purpose=s.purpose,
        legal_basis=s.legal_basis,
        region_scope=s.region_scope,
        wanted_text=s.wanted_text,
        item_names=list(s.item_names),
        wanted_codes=[c.text for c in s.wanted_codes],
        matter=s.matter,
    )


def demand_to_pb(d: Demand) -> pb.Demand:
    return pb.Demand(
        id=d.id,
        spec=demand_spec_to_pb(d.spec),
        filed_at=timestamp(d.filed_at),
        filed_by=d.filed_by,
    )


def candidate_to_pb(c: Candidate) -> pb.Candidate:
    return pb.Candidate(
        code=c.code,
        name=c.name,
        provider_code=c.provider_code,
        provider_name=c.provider_name,
        region_code=c.region_code,
        tier=c.tier,
        score=c.score,
        similarity=c.similarity,
        reasons=[REASON.to_pb[r] for r in c.reasons],  # type: ignore[misc]
        matched_items=list(c.matched_items),
    )


def match_to_pb(m: DemandMatch) -> pb.DemandMatch:
    return pb.DemandMatch(
        demand=demand_to_pb(m.demand),
        candidates=[candidate_to_pb(c) for c in m.candidates],
        met=m.met,
    )


def negative_to_pb(e: NegativeEntry) -> pb.NegativeEntry:
    return pb.NegativeEntry(
        resource_code=e.resource_code.text,
        item_names=list(e.item_names),
        legal_basis=e.legal_basis,
        added_by=e.added_by,
        added_at=timestamp(e.added_at),
    )


def coverage_to_pb(r: CoverageRow) -> pb.CoverageRow:
    return pb.CoverageRow(
        region_code=r.region_code,
        department_code=r.department_code,
        department_name=r.department_name,
        resources_supplied=r.resources_supplied,
        demands_filed=r.demands_filed,
        demands_met=r.demands_met,
        demands_unmet=r.demands_unmet,
        negative_listed_items=r.negative_listed_items,
    )
