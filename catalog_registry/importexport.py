"""Bulk import (CSV, JSON) with per-row errors and all-or-nothing semantics; JSON/DCAT export.

Row format (JSON object, or CSV with these columns): ``code``, ``name``,
``description``, ``provider_code``, ``provider_name``, ``region_code``,
``share_type`` (value or 无条件共享/有条件共享/不予共享), ``share_conditions``,
``format``, ``update_cycle``, ``items``, ``related_codes``, ``delivery_service``.
In JSON ``items`` is a list of ``{name, type, description?, share_type?}`` and
``related_codes`` a list; in CSV ``items`` is ``名称:类型[:共享类型]`` entries
separated by ``;`` and ``related_codes`` codes separated by ``;``. Stored-state
keys (``version``, ``status`` …, as :func:`export_json` writes them) are ignored.

:func:`import_resources` validates every row first — fields, ownership,
codes repeated in the file or already registered, a region outside the
node's, related codes naming no resource of the catalogue or the file — and
imports nothing if any row is bad; the report names each bad row (1-based,
the first data row is row 1) and field. Otherwise all rows are registered as
drafts in one all-or-nothing repository write; a code another writer took
in between is ``AlreadyExists`` naming the row (``rows[N].code``).

Example::

    report = import_resources(registry, principal, read_csv(text))
    if not report.ok:
        for e in report.errors:
            print(f"row {e.row} {e.field}: {e.description}")
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from catalog_registry.access import WRITERS, is_admin, require_role
from catalog_registry.model import Resource, ResourceSpec
from catalog_registry.registry import CatalogRegistry
from catalog_registry.validation import parse_resource_row
from zhida.auth.principal import Principal
from zhida.errors import AlreadyExists, FieldViolation, InvalidArgument

Row = Mapping[str, object]


@dataclass(frozen=True, slots=True)
class RowError:
    row: int  # 1-based data row
    field: str
    description: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    imported: tuple[str, ...]  # codes registered (empty when any row was bad)
    errors: tuple[RowError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def read_json(text: str) -> list[Row]:
    """Rows from a JSON array of objects (``InvalidArgument`` when it is not one)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"not JSON: {exc}", reason="INVALID_IMPORT_FILE") from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InvalidArgument("expected a JSON array of objects", reason="INVALID_IMPORT_FILE")
    return data


def read_csv(text: str) -> list[Row]:
    """Rows from CSV with a header line; ``items`` and ``related_codes`` unpacked."""
    rows: list[Row] = []
    for raw in csv.DictReader(io.StringIO(text)):
        row: dict[str, object] = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        items = str(row.get("items", ""))
        row["items"] = [_csv_item(part) for part in items.split(";") if part.strip()]
        related = str(row.get("related_codes", ""))
        row["related_codes"] = [c.strip() for c in related.split(";") if c.strip()]
        rows.append(row)
    return rows


def _csv_item(part: str) -> dict[str, str]:
    fields = [f.strip() for f in part.split(":")]
    item = {"name": fields[0], "type": fields[1] if len(fields) > 1 else ""}
    if len(fields) > 2 and fields[2]:
        item["share_type"] = fields[2]
    return item


def import_resources(
    registry: CatalogRegistry, principal: Principal, rows: Sequence[Row]
) -> ImportReport:
    """Validate every row; register all of them, or none if any row is bad."""
    require_role(principal, WRITERS, "import resources")
    errors: list[RowError] = []
    specs: list[ResourceSpec] = []
    first_row: dict[str, int] = {}
    parsed = [parse_resource_row(row) for row in rows]
    in_file = {spec.code.text for spec, _ in parsed if spec is not None}
    for n, (spec, violations) in enumerate(parsed, start=1):
        errors += [RowError(n, v.field, v.description) for v in violations]
        if spec is None:
            continue
        code = spec.code.text
        if code in first_row:
            errors.append(RowError(n, "code", f"{code} repeats row {first_row[code]}"))
        elif registry.repository.get_resource(code) is not None:
            errors.append(RowError(n, "code", f"{code} is already registered"))
        first_row.setdefault(code, n)
        if not is_admin(principal) and spec.provider_code != principal.organisation:
            errors.append(
                RowError(n, "provider_code", "a department may import only its own resources")
            )
        placement = registry.outside_region(spec.region_code)  # the node's own checks
        placement += registry.unknown_related(spec, in_file)
        errors += [RowError(n, v.field, v.description) for v in placement]
        specs.append(spec)
    if not rows:
        errors.append(RowError(0, "", "the file has no rows"))
    if errors:
        return ImportReport((), tuple(errors))
    try:
        registered = registry.register_many(principal, specs)
    except AlreadyExists as taken:  # another writer took a code after the check above
        raise _name_row(taken, specs) from None
    return ImportReport(tuple(r.key for r in registered), ())


def _name_row(taken: AlreadyExists, specs: Sequence[ResourceSpec]) -> AlreadyExists:
    """``taken`` naming the row of its code (every row became a spec, in order)."""
    code = taken.metadata.get("code", "")
    row = next((n for n, spec in enumerate(specs, start=1) if spec.code.text == code), None)
    if row is None:
        return taken
    return AlreadyExists(
        f"row {row}: {taken.message}; nothing was imported",
        reason=taken.reason,
        violations=[FieldViolation(f"rows[{row}].code", f"{code} is already registered")],
        metadata={**taken.metadata, "row": str(row)},
    )


def resource_to_row(resource: Resource) -> dict[str, object]:
    """The JSON row of a resource (what :func:`read_json` reads back), with its state."""
    spec = resource.spec
    return {
        "code": spec.code.text,
        "name": spec.name,
        "description": spec.description,
        "provider_code": spec.provider_code,
        "provider_name": spec.provider_name,
        "region_code": spec.region_code,
        "share_type": spec.share_type.value,
        "share_conditions": spec.share_conditions,
        "format": spec.format.value,
        "update_cycle": spec.update_cycle.value,
        "items": [
            {
                "name": i.name,
                "type": i.type.value,
                "description": i.description,
                **({"share_type": i.share_type.value} if i.share_type else {}),
            }
            for i in spec.items
        ],
        "related_codes": [c.text for c in spec.related_codes],
        "delivery_service": spec.delivery_service,
        "level": resource.level.name.lower(),
        "version": resource.version,
        "status": resource.status.value,
        "created_at": resource.created_at.isoformat(),
        "updated_at": resource.updated_at.isoformat(),
        "published_at": resource.published_at.isoformat() if resource.published_at else None,
        "retired_at": resource.retired_at.isoformat() if resource.retired_at else None,
    }


def export_json(resources: Sequence[Resource]) -> str:
    return json.dumps([resource_to_row(r) for r in resources], ensure_ascii=False, indent=2)


# -- DCAT-AP ---------------------------------------------------------------------------------
_EU = "http://publications.europa.eu/resource/authority/"
DCAT_CONTEXT: dict[str, object] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "csvw": "http://www.w3.org/ns/csvw#",
    "dct:issued": {"@type": "xsd:dateTime"},
    "dct:modified": {"@type": "xsd:dateTime"},
    "dcat:accessURL": {"@type": "@id"},
    "dcat:endpointURL": {"@type": "@id"},
    "csvw:datatype": {"@type": "@id"},
}
_ACCESS = {"unconditional": "PUBLIC", "conditional": "RESTRICTED", "not_shared": "NON_PUBLIC"}
_FREQUENCY = {
    "realtime": "UPDATE_CONT",
    "daily": "DAILY",
    "weekly": "WEEKLY",
    "monthly": "MONTHLY",
    "quarterly": "QUARTERLY",
    "yearly": "ANNUAL",
    "irregular": "IRREG",
}
_FILE_TYPE = {
    "database": "JSON",
    "api": "JSON",
    "spreadsheet": "XLSX",
    "document": "PDF",
    "image": "JPEG",
    "stream": "MP4",
}
_XSD = {
    "string": "string",
    "integer": "integer",
    "decimal": "decimal",
    "date": "date",
    "datetime": "dateTime",
    "boolean": "boolean",
    "code": "string",
    "binary": "base64Binary",
}


def _zh(text: str) -> dict[str, str]:
    return {"@value": text, "@language": "zh"}


def region_iri(code: str) -> str:
    """IRI for a GB/T 2260 region code (GB/T 2260 itself defines none)."""
    return f"urn:zhida:region:{code}"


def dataset_jsonld(resource: Resource, base_uri: str) -> dict[str, object]:
    """One resource as a DCAT-AP ``dcat:Dataset`` node (without ``@context``)."""
    spec = resource.spec
    iri = f"{base_uri}/resources/{spec.code.text}"
    access = f"{base_uri}/resources/{spec.code.text}/data"
    distribution: dict[str, object] = {
        "@id": f"{iri}#distribution",
        "@type": "dcat:Distribution",
        "dcat:accessURL": access,
        "dct:format": {"@id": f"{_EU}file-type/{_FILE_TYPE[spec.format.value]}"},
        "csvw:tableSchema": {
            "@type": "csvw:Schema",
            "csvw:column": [
                {
                    "@type": "csvw:Column",
                    "csvw:name": i.name,
                    "csvw:datatype": f"xsd:{_XSD[i.type.value]}",
                    **({"dct:description": _zh(i.description)} if i.description else {}),
                }
                for i in spec.items
            ],
        },
    }
    if spec.delivery_service:
        distribution["dcat:accessService"] = {
            "@type": "dcat:DataService",
            "dct:title": spec.delivery_service,
            "dcat:endpointURL": access,
        }
    node: dict[str, object] = {
        "@id": iri,
        "@type": "dcat:Dataset",
        "dct:identifier": spec.code.text,
        "dct:title": _zh(spec.name),
        "dct:description": _zh(spec.description or spec.name),
        "dct:publisher": {
            "@id": f"urn:uscc:{spec.provider_code}",
            "@type": "foaf:Agent",
            "foaf:name": _zh(spec.provider_name),
            "dct:identifier": spec.provider_code,
        },
        "dct:spatial": {
            "@id": region_iri(spec.region_code),
            "@type": "dct:Location",
            "dct:identifier": spec.region_code,
        },
        "dct:accessRights": {"@id": f"{_EU}access-right/{_ACCESS[spec.share_type.value]}"},
        "dct:rights": {
            "@type": "dct:RightsStatement",
            "dct:description": _zh(
                " ".join(filter(None, (spec.share_type.label, spec.share_conditions)))
            ),
        },
        "dct:accrualPeriodicity": {"@id": f"{_EU}frequency/{_FREQUENCY[spec.update_cycle.value]}"},
        "dct:modified": resource.updated_at.isoformat(),
        "owl:versionInfo": str(resource.version),
        "dcat:distribution": [distribution],
    }
    if resource.published_at is not None:
        node["dct:issued"] = resource.published_at.isoformat()
    if spec.related_codes:
        node["dct:relation"] = [
            {"@id": f"{base_uri}/resources/{c.text}"} for c in spec.related_codes
        ]
    return node


def export_dcat(
    resources: Sequence[Resource],
    *,
    base_uri: str,
    publisher_code: str,
    publisher_name: str,
    title: str = "政务信息资源目录",
) -> dict[str, object]:
    """A DCAT-AP JSON-LD document: one ``dcat:Catalog`` listing every resource as a dataset.

    ``publisher_*`` name the body that runs the catalogue (数据管理机构).
    """
    base = base_uri.rstrip("/")
    return {
        "@context": DCAT_CONTEXT,
        "@id": f"{base}/catalog",
        "@type": "dcat:Catalog",
        "dct:title": _zh(title),
        "dct:description": _zh("政务数据共享供给清单 (zhida)"),
        "dct:publisher": {
            "@id": f"urn:uscc:{publisher_code}",
            "@type": "foaf:Agent",
            "foaf:name": _zh(publisher_name),
            "dct:identifier": publisher_code,
        },
        "dcat:dataset": [dataset_jsonld(r, base) for r in resources],
    }
