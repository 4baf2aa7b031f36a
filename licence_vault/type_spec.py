"""What a licence type is (:class:`LicenceType`): its fields and how their values are checked.

A :class:`LicenceType` has its GB/T 36904 type code (the defining agency's
USCC + a 3-digit sequence), a name, the defining agency, the holder kind
(person or organisation), the data fields printed on its face (照面信息,
:class:`FieldSpec`) with their kinds and whether they are required, a
validity rule and the document layout (title, field order, labels) used when
it is rendered. The registry and the nine shipped types are in
:mod:`licence_vault.types`, which re-exports these names.

Data checking (:meth:`LicenceType.check_data`) normalises every value to a
string (dates ``YYYY-MM-DD``, integers without leading zeros, codes in upper
case) and reports *every* bad field at once as one InvalidArgument with a
field violation each (``data.许可证编号``).

Example::

    >>> FieldSpec("成立日期", FieldKind.DATE).problem(" 2024-03-01 ")
    (None, '2024-03-01')
    >>> FieldSpec("户号", pattern=r"[0-9]{6,12}").problem("12ab")
    ('does not have the expected form ([0-9]{6,12})', '12ab')
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from stdnum.cn import ric, uscc

from licence_vault.codes import is_compact_uscc
from licence_vault.holder import HolderCodeType
from licence_vault.identifier import validate_type_code
from zhida.errors import FieldViolation, InvalidArgument

__all__ = ["INVALID_DATA", "FieldKind", "FieldSpec", "LicenceType"]

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
