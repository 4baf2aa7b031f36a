"""zhida errors -> rich gRPC statuses, and decoding them back."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from zhida.client import decode_status as decode_details
from zhida.client import error_details
from zhida.errors import (
    ErrorCode,
    FieldViolation,
    IntegrityError,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    ZhidaError,
)
from zhida.server.status import (
    grpc_code,
    internal_status,
    status_for,
    status_for_exception,
)


def _proto(status: grpc.Status) -> status_pb2.Status:
    (key, value), *rest = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    assert not rest
    return status_pb2.Status.FromString(value)


class _FakeCall:
    """Enough of grpc.Call for rpc_status.from_call."""

    def __init__(self, status: grpc.Status, extra: tuple[tuple[str, Any], ...] = ()) -> None:
        self._status = status
        self._extra = extra

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.details

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return (*self._extra, *self._status.trailing_metadata)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_code_maps_to_the_grpc_code_of_the_same_number(code: ErrorCode) -> None:
    assert grpc_code(code.value).value[0] == code.value
    assert grpc_code(code.value).name == code.name


def test_unknown_code_number_is_unknown() -> None:
    assert grpc_code(999) is grpc.StatusCode.UNKNOWN


def test_error_info_always_carries_domain_reason_and_metadata() -> None:
    status = status_for(
        NotFound("no such licence", reason="LICENCE_NOT_FOUND", metadata={"licence_id": "L-9"})
    )
    assert status.code is grpc.StatusCode.NOT_FOUND
    assert status.details == "no such licence"
    proto = _proto(status)
    assert proto.code == 5
    assert proto.message == "no such licence"
    assert len(proto.details) == 1
    info = error_details_pb2.ErrorInfo()
    assert proto.details[0].Unpack(info)
    assert (info.domain, info.reason) == ("zhida", "LICENCE_NOT_FOUND")
    assert dict(info.metadata) == {"licence_id": "L-9"}


def test_violations_become_a_bad_request() -> None:
    error = InvalidArgument(
        "bad request",
        reason="INVALID_REGION_CODE",
        violations=[
            FieldViolation("region_code", "must be six digits"),
            FieldViolation("items[2].name", "must not be empty"),
        ],
    )
    proto = _proto(status_for(error))
    bad = error_details_pb2.BadRequest()
    assert proto.details[1].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("region_code", "must be six digits"),
        ("items[2].name", "must not be empty"),
    ]
    decoded = decode_details(proto)
    assert decoded.code is grpc.StatusCode.INVALID_ARGUMENT
    assert decoded.reason == "INVALID_REGION_CODE"
    assert decoded.violations == tuple(error.violations)


def test_default_reason_of_each_class_is_used() -> None:
    assert decode_details(_proto(status_for(Unauthenticated("who?")))).reason == "UNAUTHENTICATED"
    integrity = decode_details(_proto(status_for(IntegrityError("hash mismatch"))))
    assert (integrity.code, integrity.reason) == (grpc.StatusCode.INTERNAL, "DATA_INTEGRITY")


def test_internal_status_reveals_only_the_trace_id() -> None:
    status = internal_status("abc123")
    assert status.code is grpc.StatusCode.INTERNAL
    assert status.details == "internal error (trace abc123)"
    decoded = decode_details(_proto(status))
    assert decoded.reason == "INTERNAL"
    assert decoded.metadata == {"trace_id": "abc123"}


def test_unexpected_exception_is_logged_with_traceback_but_not_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise KeyError("secret-table-name")
    except KeyError as exc:
        with caplog.at_level(logging.ERROR, logger="zhida.server.status"):
            status = status_for_exception(exc, "/x.Y/Z", "t-1")
    assert "secret-table-name" not in status.details
    assert "Traceback" not in status.details
    assert b"secret-table-name" not in status.trailing_metadata[0][1]
    (record,) = caplog.records
    assert record.exc_info is not None
    assert "secret-table-name" in caplog.text
    assert record.__dict__["method"] == "/x.Y/Z"


def test_zhida_error_is_not_logged_as_unexpected(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        status = status_for_exception(ZhidaError("plain"), "/x.Y/Z", "t-2")
    assert status.code is grpc.StatusCode.INTERNAL
    assert status.details == "plain"
    assert caplog.records == []


def test_error_details_round_trips_through_rpc_status() -> None:
    status = status_for(NotFound("gone", reason="GONE"))
    call = _FakeCall(status, extra=(("x-trace-id", "t"),))
    assert rpc_status.from_call(call) is not None  # type: ignore[arg-type]
    details = error_details(call)  # type: ignore[arg-type]
    assert (details.code, details.message, details.reason, details.domain) == (
        grpc.StatusCode.NOT_FOUND,
        "gone",
        "GONE",
        "zhida",
    )


def test_error_details_without_rich_status_has_code_and_message_only() -> None:
    rich = status_for(NotFound("x"))
    plain = _FakeCall(rich, extra=(("x-trace-id", "t"),))
    plain.trailing_metadata = lambda: (("x-trace-id", "t"),)  # type: ignore[method-assign]
    details = error_details(plain)  # type: ignore[arg-type]
    assert (details.code, details.message, details.reason) == (grpc.StatusCode.NOT_FOUND, "x", "")
