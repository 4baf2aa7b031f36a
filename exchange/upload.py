"""Parsing an upload for the hosted provider: CSV or JSON, all or nothing, every bad field named.

A file is checked against the resource's data items before anything is
stored: every column must be an item of the resource, the key item must be
present in every row and unique in the file, and every value must suit its
item's type (integer, decimal, ``YYYY-MM-DD`` date, RFC 3339 date-time,
``true``/``false``, base64 binary). Problems are reported as
:class:`~zhida.errors.FieldViolation` named ``rows[N].<item>`` (N counts data
rows from 1, like the catalogue's import) or ``columns[N]`` for the header;
one bad value fails the whole upload (``INVALID_ARGUMENT``, reason
``INVALID_UPLOAD``). Empty values (``""``, JSON ``null``) mean "no value" and
are not stored.

CSV: UTF-8 (a BOM is allowed), a header line of item names. JSON: an array of
objects; numbers and booleans are turned into their text. In CHANGES mode a
row whose key starts with ``-`` deletes the record with the rest of the key.

Records come out encoded as ``zhida.provider.v1.Record`` bytes
(deterministic), the form the hosted store keeps.

Example::

    >>> from catalog_registry.model import DataType
    >>> items = {"统一社会信用代码": DataType.STRING, "注册资本": DataType.DECIMAL}
    >>> text = "统一社会信用代码,注册资本\\n91420100MA4KXXXX1X,100.5\\n".encode()
    >>> parsed = parse_upload(text, "csv", "统一社会信用代码", items, changes=False)
    >>> sorted(parsed.upserts), parsed.deletes
    (['91420100MA4KXXXX1X'], [])
    >>> bad = "统一社会信用代码,注册资本\\n91420100MA4KXXXX1X,lots\\n".encode()
    >>> try:
    ...     parse_upload(bad, "csv", "统一社会信用代码", items, changes=False)
    ... except Exception as e:
    ...     print(e.violations[0].field)
    rows[1].注册资本
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from catalog_registry.model import DataType
from zhida.errors import FieldViolation, InvalidArgument
from zhida.provider.v1 import data_provider_service_pb2 as ppb

MAX_VIOLATIONS = 100
MAX_KEY_LENGTH = 256
MAX_VALUE_LENGTH = 65536
DELETE_PREFIX = "-"
REASON = "INVALID_UPLOAD"

_INTEGER = re.compile(r"[+-]?\d{1,30}")
_DECIMAL = re.compile(r"[+-]?\d{1,30}(\.\d{1,18})?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


@dataclass(frozen=True, slots=True)
class ParsedUpload:
    """What an upload changes: encoded records by key, keys to delete, rows read."""

    upserts: dict[str, bytes]
    deletes: list[str]
    rows: int


def encode_record(key: str, fields: Mapping[str, str]) -> bytes:
    """The stored form of a record: ``zhida.provider.v1.Record``, deterministic bytes."""
    return ppb.Record(key=key, fields=fields).SerializeToString(deterministic=True)


def value_problem(kind: DataType, value: str) -> str | None:
    """Why ``value`` is not a valid text of ``kind``, or None."""
    if len(value) > MAX_VALUE_LENGTH:
        return f"is longer than {MAX_VALUE_LENGTH} characters"
    if kind is DataType.INTEGER:
        return None if _INTEGER.fullmatch(value) else "must be an integer"
    if kind is DataType.DECIMAL:
        return None if _DECIMAL.fullmatch(value) else "must be a decimal number such as 12.50"
    if kind is DataType.DATE:
        if _DATE.fullmatch(value):
            try:
                date.fromisoformat(value)
                return None
            except ValueError:
                pass
        return "must be a date YYYY-MM-DD"
    if kind is DataType.DATETIME:
        if _DATETIME.fullmatch(value):
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
                return None
            except ValueError:
                pass
        return "must be an RFC 3339 date-time with an offset"
    if kind is DataType.BOOLEAN:
        return None if value in ("true", "false") else "must be true or false"
    if kind is DataType.BINARY:
        try:
            base64.b64decode(value, validate=True)
            return None
        except (binascii.Error, ValueError):
            return "must be base64"
    return None  # STRING, CODE: any text


def _csv_rows(data: bytes) -> tuple[list[str], Iterator[list[str]]]:
    text = data.decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise InvalidArgument(
            "the CSV file is empty",
            reason=REASON,
            violations=[FieldViolation("columns", "a header line of item names is required")],
        )
    return [h.strip() for h in header], reader


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return value
    raise TypeError(type(value).__name__)


class _Collector:
    """Violations, capped; raises once at the end."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []
        self.count = 0

    def add(self, field: str, description: str) -> None:
        self.count += 1
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(FieldViolation(field, description))

    def raise_if_any(self, rows: int) -> None:
        if self.count:
            more = f" (first {MAX_VIOLATIONS} listed)" if self.count > MAX_VIOLATIONS else ""
            raise InvalidArgument(
                f"upload refused: {self.count} problem(s) in {rows} row(s){more}; nothing stored",
                reason=REASON,
                violations=self.violations,
            )


class _Builder:
    """Validates rows one at a time and accumulates the upload."""

    def __init__(
        self, key_item: str, items: Mapping[str, DataType], changes: bool, bad: _Collector
    ) -> None:
        self.key_item = key_item
        self.items = items
        self.changes = changes
        self.bad = bad
        self.upserts: dict[str, bytes] = {}
        self.deletes: list[str] = []
        self.first_row: dict[str, int] = {}

    def row(self, n: int, values: Mapping[str, str]) -> None:
        key = values.get(self.key_item, "")
        where = f"rows[{n}].{self.key_item}"
        deleting = self.changes and key.startswith(DELETE_PREFIX)
        if deleting:
            key = key[len(DELETE_PREFIX) :]
        if not key:
            self.bad.add(where, "the key item is required")
            return
        if len(key) > MAX_KEY_LENGTH:
            self.bad.add(where, f"is longer than {MAX_KEY_LENGTH} characters")
            return
        seen = self.first_row.get(key)
        if seen is not None:
            self.bad.add(where, f"key {key!r} repeats row {seen}")
            return
        self.first_row[key] = n
        if deleting:
            self.deletes.append(key)
            return
        fields: dict[str, str] = {}
        ok = True
        for name, value in values.items():
            if value == "":
                continue
            problem = value_problem(self.items[name], value)
            if problem is not None:
                self.bad.add(f"rows[{n}].{name}", problem)
                ok = False
            fields[name] = value
        if ok:
            self.upserts[key] = encode_record(key, fields)


def _check_columns(header: Sequence[str], key_item: str, items: Mapping[str, object]) -> None:
    bad = _Collector()
    seen: set[str] = set()
    for i, name in enumerate(header):
        if name in seen:
            bad.add(f"columns[{i}]", f"{name!r} is repeated")
        elif name not in items:
            bad.add(f"columns[{i}]", f"{name!r} is not a data item of the resource")
        seen.add(name)
    if key_item not in seen:
        bad.add("key_item", f"{key_item!r} is not a column of the file")
    bad.raise_if_any(0)


def parse_upload(
    data: bytes,
    fmt: str,
    key_item: str,
    items: Mapping[str, DataType],
    *,
    changes: bool,
) -> ParsedUpload:
    """Parse and check a whole file (``fmt`` ``"csv"`` or ``"json"``); see the module docstring."""
    if key_item not in items:
        raise InvalidArgument(
            f"{key_item!r} is not a data item of the resource",
            reason=REASON,
            violations=[FieldViolation("header.key_item", "must name a data item")],
        )
    bad = _Collector()
    builder = _Builder(key_item, items, changes, bad)
    rows = 0
    try:
        if fmt == "csv":
            header, reader = _csv_rows(data)
            _check_columns(header, key_item, items)
            width = len(header)
            for cells in reader:
                if not cells:
                    continue  # a blank line
                rows += 1
                if len(cells) != width:
                    bad.add(f"rows[{rows}]", f"has {len(cells)} values for {width} columns")
                    continue
                builder.row(rows, dict(zip(header, cells, strict=True)))
        elif fmt == "json":
            rows = _json_rows(data, key_item, items, builder, bad)
        else:
            raise InvalidArgument(
                f"unknown format {fmt!r}",
                reason=REASON,
                violations=[FieldViolation("header.format", "must be CSV or JSON")],
            )
    except UnicodeDecodeError as exc:
        raise InvalidArgument(
            "the file is not UTF-8",
            reason=REASON,
            violations=[FieldViolation("chunk", f"invalid UTF-8 at byte {exc.start}")],
        ) from None
    except csv.Error as exc:
        raise InvalidArgument(
            f"the CSV file cannot be read: {exc}",
            reason=REASON,
            violations=[FieldViolation(f"rows[{rows + 1}]", str(exc))],
        ) from None
    bad.raise_if_any(rows)
    return ParsedUpload(builder.upserts, builder.deletes, rows)


def _json_rows(
    data: bytes,
    key_item: str,
    items: Mapping[str, DataType],
    builder: _Builder,
    bad: _Collector,
) -> int:
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise InvalidArgument(
            f"the JSON file cannot be read: {exc.msg} at line {exc.lineno}",
            reason=REASON,
            violations=[FieldViolation("chunk", f"{exc.msg} at line {exc.lineno}")],
        ) from None
    if not isinstance(document, list):
        raise InvalidArgument(
            "the JSON file must be an array of objects",
            reason=REASON,
            violations=[FieldViolation("rows", "must be an array of objects")],
        )
    for n, row in enumerate(document, start=1):
        if not isinstance(row, dict):
            bad.add(f"rows[{n}]", "must be an object of item name -> value")
            continue
        values: dict[str, str] = {}
        for name, raw in row.items():
            if name not in items:
                bad.add(f"rows[{n}].{name}", "is not a data item of the resource")
                continue
            try:
                text = _json_text(raw)
            except TypeError as exc:
                bad.add(f"rows[{n}].{name}", f"must be a string, number or boolean, not {exc}")
                continue
            if text is not None:
                values[name] = text
        builder.row(n, values)
    return len(document)
