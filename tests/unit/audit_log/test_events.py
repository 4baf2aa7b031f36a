"""Audit events: validation, canonical bytes, strict decoding, holder hashing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit_log.events import (
    Action,
    AuditEvent,
    EventFormatError,
    HolderHasher,
    Outcome,
    decode_event,
    encode_event,
)
from tests.unit.audit_log.conftest import make_event
from zhida.errors import InvalidArgument

T = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


def test_canonical_bytes_are_sorted_compact_json_without_absent_fields() -> None:
    event = AuditEvent(action=Action.GRANT_REVOKE, time=T, subject="admin-1", legal_basis="条例")
    assert (
        encode_event(event)
        == (
            '{"action":"grant.revoke","legal_basis":"条例","outcome":"ok",'
            '"subject":"admin-1","time":"2025-01-02T03:04:05.000006Z","v":1}'
        ).encode()
    )


def _printable(s: str) -> bool:
    return not any(ord(c) < 32 or c == "\x7f" or 0xD800 <= ord(c) <= 0xDFFF for c in s)


@given(
    st.text(min_size=1, max_size=40).filter(_printable),
    st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
                    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF,
                                                   exclude_characters="\x7f",
                                                   exclude_categories=["Cs"]),
                            min_size=1, max_size=10), max_size=4),
)  # fmt: skip
def test_encoding_matches_json_dumps_and_round_trips(text: str, details: dict[str, str]) -> None:
    event = AuditEvent(action=Action.DATA_RELEASE, time=T, purpose=text, details=details)
    leaf = encode_event(event)
    assert leaf == json.dumps(
        event.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert decode_event(leaf) == event


def test_times_are_normalised_to_utc() -> None:
    beijing = timezone(timedelta(hours=8))
    event = AuditEvent(action=Action.LICENCE_ISSUE, time=datetime(2025, 1, 2, 11, tzinfo=beijing))
    assert event.time == datetime(2025, 1, 2, 3, tzinfo=UTC)
    assert event.time.tzinfo is UTC
    assert b'"time":"2025-01-02T03:00:00.000000Z"' in encode_event(event)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"action": "licence.steal"}, "action"),
        ({"outcome": Outcome.DENIED}, "reason"),
        ({"role": "king"}, "role"),
        ({"subject": ""}, "subject"),
        ({"purpose": "a\nb"}, "purpose"),
        ({"holder_ref": "42010219900101001X"}, "holder_ref"),
        ({"resource": "x" * 513}, "resource"),
        ({"details": {"Bad-Key": "v"}}, "details['Bad-Key']"),
        ({"details": {"kind": "a\x00b"}}, "details.kind"),
        ({"details": {"kind": ""}}, "details.kind"),
        ({"details": {"kind": "x" * 513}}, "details.kind"),
        ({"details": {f"k{i}": "v" for i in range(33)}}, "details"),
        ({"time": datetime(2025, 1, 1)}, "time"),
    ],
)
def test_invalid_events_name_the_field(fields: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"action": Action.DATA_REQUEST, "time": T}
    with pytest.raises(InvalidArgument) as info:
        AuditEvent(**{**base, **fields})  # type: ignore[arg-type]
    assert info.value.reason == "INVALID_AUDIT_EVENT"
    assert field in [v.field for v in info.value.violations]


@pytest.mark.parametrize(
    "leaf",
    [
        b"not json",
        b'{"action":"data.request","outcome":"ok","time":"2025-01-02T03:04:05.000006Z"}',  # no v
        b'{"v":1, "action":"data.request","outcome":"ok","time":"2025-01-02T03:04:05.000006Z"}',
        b'{"action":"data.request","outcome":"ok","time":"2025-01-02T03:04:05Z","v":1}',
        b'{"action":"data.request","extra":"x","outcome":"ok",'
        b'"time":"2025-01-02T03:04:05.000006Z","v":1}',
        b'{"outcome":"ok","action":"data.request","time":"2025-01-02T03:04:05.000006Z","v":1}',
        b"\xff",
    ],
)
def test_decode_accepts_only_canonical_events(leaf: bytes) -> None:
    with pytest.raises(EventFormatError):
        decode_event(leaf)


def test_decode_round_trip_of_every_test_event() -> None:
    for i in range(30):
        event = make_event(i)
        assert decode_event(encode_event(event)) == event


def test_holder_hasher_is_keyed_and_normalises() -> None:
    a, b = HolderHasher(b"k" * 32), HolderHasher(b"j" * 32)
    ref = a.ref("42010219900101001x")
    assert ref == a.ref(" 42010219900101001X ") != b.ref("42010219900101001X")
    assert len(ref) == 64
    assert "4201" not in ref
    assert "kkkk" not in repr(a)
    with pytest.raises(InvalidArgument):
        a.ref("  ")
    with pytest.raises(ValueError, match="16 random bytes"):
        HolderHasher(b"short")


def test_oversized_events_are_refused() -> None:
    details = {f"k{i}": "证" * 500 for i in range(32)}
    with pytest.raises(InvalidArgument, match="more than"):
        encode_event(AuditEvent(action=Action.CATALOG_CHANGE, time=T, details=details))


def test_action_set_is_closed_and_documented() -> None:
    assert {a.value.split(".")[0] for a in Action} == {
        "data", "subscription", "share", "grant", "licence", "consent", "catalog",
        "negative_list", "auth",
    }  # fmt: skip
    for action in Action:
        assert action.value in (Action.__doc__ or "") or action.value.split(".")[0] in (
            Action.__doc__ or ""
        )
