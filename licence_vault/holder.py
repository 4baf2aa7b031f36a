"""Licence holders (持证主体): a person by resident ID number, an organisation by USCC.

GB/T 36903 names the holder's code type: ``111`` for the resident identity
card number (GB 11643) and ``001`` for the unified social credit code
(GB 32100). Both are validated with python-stdnum, check characters included;
a holder code is always kept in its compact upper-case form, so
``42010219850612301x`` and ``42010219850612301X`` are one holder.

Example::

    >>> validate_holder("42010219850612301x", HolderCodeType.RESIDENT_ID)
    '42010219850612301X'
    >>> detect_code_type("91420102MA4KXY128F")
    <HolderCodeType.USCC: '001'>
"""

from __future__ import annotations

import enum

from stdnum.cn import ric, uscc

from licence_vault.codes import is_compact_uscc
from zhida.errors import FieldViolation, InvalidArgument

__all__ = ["HolderCodeType", "detect_code_type", "validate_holder", "validate_uscc_code"]

INVALID_HOLDER = "INVALID_HOLDER_ID"


class HolderCodeType(enum.StrEnum):
    """GB/T 36903 持证主体代码类型."""

    RESIDENT_ID = "111"  # 公民身份号码 (GB 11643)
    USCC = "001"  # 统一社会信用代码 (GB 32100)

    @property
    def label(self) -> str:
        return "公民身份号码" if self is HolderCodeType.RESIDENT_ID else "统一社会信用代码"


def _invalid(field: str, value: str, problem: str) -> InvalidArgument:
    shown = value if len(value) <= 40 else value[:40] + "…"
    return InvalidArgument(
        f"{field} {shown!r} {problem}",
        reason=INVALID_HOLDER,
        violations=[FieldViolation(field, problem)],
    )


def validate_holder(code: str, code_type: HolderCodeType, *, field: str = "holder_code") -> str:
    """The compact holder code, or InvalidArgument(INVALID_HOLDER_ID) naming ``field``."""
    if not isinstance(code, str) or not code.strip():
        raise _invalid(field, str(code), "must not be empty")
    compact = code.strip().upper()
    if code_type is HolderCodeType.RESIDENT_ID:
        try:
            return str(ric.validate(compact))
        except Exception as exc:  # stdnum's ValidationError subclasses
            problem = f"is not a valid resident ID number (GB 11643): {exc}"
            raise _invalid(field, code, problem) from None
    if is_compact_uscc(compact):  # the common case, without stdnum's generic code
        return compact
    try:
        return str(uscc.validate(compact))
    except Exception as exc:
        problem = f"is not a valid unified social credit code: {exc}"
        raise _invalid(field, code, problem) from None


def validate_uscc_code(code: str, *, field: str, reason: str = "INVALID_USCC") -> str:
    """A valid compact USCC or InvalidArgument naming ``field``."""
    if isinstance(code, str) and is_compact_uscc(code.strip().upper()):
        return code.strip().upper()
    try:
        return str(uscc.validate(code.strip().upper()))
    except Exception as exc:
        raise InvalidArgument(
            f"{field} {code!r} is not a valid unified social credit code: {exc}",
            reason=reason,
            violations=[FieldViolation(field, "must be a valid 18-character USCC")],
        ) from None


def detect_code_type(code: str) -> HolderCodeType:
    """The code type a valid ``code`` has (both are 18 characters); resident ID if neither."""
    compact = code.strip().upper()
    if ric.is_valid(compact):  # a birth date inside: a USCC practically never passes
        return HolderCodeType.RESIDENT_ID
    if is_compact_uscc(compact) or uscc.is_valid(compact):
        return HolderCodeType.USCC
    return HolderCodeType.RESIDENT_ID  # validation will then say why it is wrong
