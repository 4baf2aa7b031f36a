"""Typed errors shared by every zhida module, free of gRPC.

Domain code raises these; the server layer (``zhida.server.status``) turns each
into a ``google.rpc.Status`` with an ``ErrorInfo`` (domain ``zhida``, the
``reason``) and, for invalid arguments, a ``BadRequest`` with field violations.

Example::

    from zhida.errors import FieldViolation, InvalidArgument

    raise InvalidArgument(
        "region code must be six digits",
        reason="INVALID_REGION_CODE",
        violations=[FieldViolation("region_code", "must be six digits, got '42'")],
    )
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ERROR_DOMAIN = "zhida"


class ErrorCode(enum.Enum):
    """The canonical status codes zhida uses; values equal the gRPC code numbers."""

    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: its path (``items[2].name``) and what is wrong with it."""

    field: str
    description: str


class ZhidaError(Exception):
    """Base class of every error zhida raises on purpose.

    ``reason`` is a stable UPPER_SNAKE_CASE identifier clients may branch on;
    ``message`` is for humans and may change.
    """

    code: ErrorCode = ErrorCode.INTERNAL
    default_reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: Iterable[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.violations = tuple(violations)
        self.metadata = dict(metadata or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class InvalidArgument(ZhidaError):
    code = ErrorCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"


class DeadlineExceeded(ZhidaError):
    code = ErrorCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class NotFound(ZhidaError):
    code = ErrorCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(ZhidaError):
    code = ErrorCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class PermissionDenied(ZhidaError):
    code = ErrorCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class ResourceExhausted(ZhidaError):
    code = ErrorCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class FailedPrecondition(ZhidaError):
    code = ErrorCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Aborted(ZhidaError):
    code = ErrorCode.ABORTED
    default_reason = "ABORTED"


class Unavailable(ZhidaError):
    code = ErrorCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class Unauthenticated(ZhidaError):
    code = ErrorCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class IntegrityError(ZhidaError):
    """Stored data does not match its hash or signature; never served."""

    code = ErrorCode.INTERNAL
    default_reason = "DATA_INTEGRITY"


class ConfigError(ZhidaError):
    """The configuration is wrong; the process refuses to start.

    ``key`` names the offending setting as it appears in the TOML file
    (``database.url``) so the operator can fix it without reading code.
    """

    code = ErrorCode.FAILED_PRECONDITION
    default_reason = "INVALID_CONFIG"

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config {key}: {problem}", violations=[FieldViolation(key, problem)])
        self.key = key
        self.problem = problem
