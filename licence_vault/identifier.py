"""Electronic licence identifiers (电子证照标识) per GB/T 36904-2018.

An identifier is ``1.2.156.3005.2.<type code>.<issuer code>.<serial>.<version>.<check>``:

* the root ``1.2.156.3005.2`` (the OID arc of national electronic licences);
* the licence type code: the defining agency's USCC and a 3-digit sequence (21 characters);
* the issuing agency's USCC (18 characters);
* a serial number, here 10 digits, counted per (type, issuer);
* the version, 3 digits, ``001`` for the first issue, incremented on each amendment;
* one check character: ISO 7064 MOD 37,36 (GB/T 17710) over the identifier
  with the root and the dots removed (:mod:`licence_vault.codes`; the tests
  compare it with python-stdnum).

Example::

    >>> ident = LicenceId("111000000000170137001", "11420102000040176F", 1, 1)
    >>> str(ident)
    '1.2.156.3005.2.111000000000170137001.11420102000040176F.0000000001.001.R'
    >>> LicenceId.parse(str(ident)) == ident
    True
    >>> str(ident.next_version())[-6:]
    '.002.P'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from licence_vault.codes import is_compact_uscc, mod_37_36_check
from zhida.errors import FieldViolation, InvalidArgument

__all__ = ["ROOT", "LicenceId", "check_character", "validate_type_code"]

ROOT = "1.2.156.3005.2"
SERIAL_DIGITS = 10
MAX_SERIAL = 10**SERIAL_DIGITS - 1
MAX_VERSION = 999
INVALID_IDENTIFIER = "INVALID_LICENCE_ID"

_TYPE_CODE = re.compile(r"[0-9A-Z]{18}[0-9]{3}")
_SHAPE = re.compile(
    re.escape(ROOT)
    + rf"\.([0-9A-Z]{{18}}[0-9]{{3}})\.([0-9A-Z]{{18}})\.([0-9]{{{SERIAL_DIGITS}}})"
    + r"\.([0-9]{3})\.([0-9A-Z])"
)


def check_character(body: str) -> str:
    """The ISO 7064 MOD 37,36 check character of ``body`` (no root, no dots)."""
    return mod_37_36_check(body)


def _bad(value: str, problem: str, field: str = "licence_id") -> InvalidArgument:
    return InvalidArgument(
        f"{value[:120]!r} is not a GB/T 36904 licence identifier: {problem}",
        reason=INVALID_IDENTIFIER,
        violations=[FieldViolation(field, problem)],
    )


def validate_type_code(code: str, field: str = "type_code") -> str:
    """A type code: the defining agency's valid USCC followed by 3 digits."""
    if (
        not isinstance(code, str)
        or not _TYPE_CODE.fullmatch(code)
        or not is_compact_uscc(code[:18])
    ):
        raise InvalidArgument(
            f"licence type code {str(code)[:40]!r} must be a USCC followed by 3 digits",
            reason="INVALID_TYPE_CODE",
            violations=[FieldViolation(field, "must be the defining agency's USCC + 3 digits")],
        )
    return code


@dataclass(frozen=True, slots=True, order=True)
class LicenceId:
    """A parsed identifier; ``str()`` renders it with its check character."""

    type_code: str
    issuer_code: str
    serial: int
    version: int

    def __post_init__(self) -> None:
        if not 1 <= self.serial <= MAX_SERIAL:
            raise InvalidArgument(f"serial {self.serial} out of range", reason=INVALID_IDENTIFIER)
        if not 1 <= self.version <= MAX_VERSION:
            raise InvalidArgument(
                f"version {self.version} out of range 1..{MAX_VERSION}", reason=INVALID_IDENTIFIER
            )

    @property
    def body(self) -> str:
        """The characters the check character covers."""
        return (
            f"{self.type_code}{self.issuer_code}{self.serial:0{SERIAL_DIGITS}d}{self.version:03d}"
        )

    @property
    def check(self) -> str:
        return check_character(self.body)

    @property
    def lineage(self) -> str:
        """The identifier without version and check: the same for every version of a licence."""
        return f"{ROOT}.{self.type_code}.{self.issuer_code}.{self.serial:0{SERIAL_DIGITS}d}"

    def __str__(self) -> str:
        return f"{self.lineage}.{self.version:03d}.{self.check}"

    def next_version(self) -> LicenceId:
        if self.version >= MAX_VERSION:
            raise InvalidArgument(
                f"licence {self} has reached version {MAX_VERSION}", reason="VERSION_EXHAUSTED"
            )
        return LicenceId(self.type_code, self.issuer_code, self.serial, self.version + 1)

    @classmethod
    def parse(cls, text: str, *, field: str = "licence_id") -> LicenceId:
        """Parse and check ``text``; InvalidArgument(INVALID_LICENCE_ID) naming ``field``."""
        if not isinstance(text, str):
            raise _bad(repr(text), "must be a string", field)
        value = text.strip()
        match = _SHAPE.fullmatch(value)
        if match is None:
            raise _bad(
                value,
                f"expected {ROOT}.<type code 21>.<issuer USCC 18>.<serial {SERIAL_DIGITS} digits>"
                ".<version 3 digits>.<check>",
                field,
            )
        type_code, issuer, serial, version, check = match.groups()
        if not is_compact_uscc(type_code[:18]):
            raise _bad(value, "the type code does not start with a valid USCC", field)
        if not is_compact_uscc(issuer):
            raise _bad(value, "the issuer code is not a valid USCC", field)
        if int(serial) == 0 or int(version) == 0:
            raise _bad(value, "serial and version start at 1", field)
        ident = cls(type_code, issuer, int(serial), int(version))
        if ident.check != check:
            raise _bad(value, "wrong check character (ISO 7064 MOD 37,36)", field)
        return ident
