"""RFC 8785 canonical JSON and strict base64url."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from signing.canonical import (
    b64url_decode,
    b64url_encode,
    canonical_json,
    loads_canonical,
    loads_strict,
)
from zhida.errors import InvalidArgument


def test_rfc8785_key_sorting_example() -> None:
    # RFC 8785 §3.2.3: keys sorted by UTF-16 code units (the emoji sorts before U+FB33).
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]
    assert list(json.loads(canonical_json(value)).values()) == expected


def test_rfc8785_section_3_2_2_example() -> None:
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(value) == expected.encode()


def test_chinese_text_is_raw_utf8_and_integers_plain() -> None:
    assert canonical_json({"名称": "食品经营许可证", "n": 10, "b": [True, None]}) == (
        '{"b":[true,null],"n":10,"名称":"食品经营许可证"}'.encode()
    )


@pytest.mark.parametrize(
    "bad", [{1: "int key"}, {"x": 2**53}, {"x": float("nan")}, {"x": b"bytes"}, {"x": "\ud800"}]
)
def test_not_json_refused(bad: Any) -> None:
    with pytest.raises(InvalidArgument):
        canonical_json(bad)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_fast_path_matches_rfc8785(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        with pytest.raises(InvalidArgument):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


def test_loads_strict() -> None:
    assert loads_strict(b'{"a":1}') == {"a": 1}
    with pytest.raises(ValueError, match="duplicate"):
        loads_strict(b'{"a":1,"a":2}')
    with pytest.raises(ValueError, match="NaN"):
        loads_strict(b'{"a":NaN}')


def test_b64url_strict() -> None:
    for data in [b"", b"\x00", b"\xff\xfe", b"abc", bytes(range(64))]:
        assert b64url_decode(b64url_encode(data)) == data
    assert b64url_encode(b"\xfb\xff") == "-_8"
    for bad in ["a", "ab=", "a+b/", "ab c", "AB==", "-_9"]:  # "-_9": unused bits set
        with pytest.raises(ValueError, match="base64url"):
            b64url_decode(bad)


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1,"b":[true,null,"证照"]}',
        '{"m":1e-7,"n":1.5}',
        '{"\\r":1,"\U0001f600":2,"\ufb33":3}',
        "[]",
        '"x"',
    ],
)
def test_loads_canonical_accepts_canonical_text(text: str) -> None:
    assert canonical_json(loads_canonical(text.encode())) == text.encode()


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',  # whitespace
        '{"b":1,"a":2}',  # unsorted
        '{"a":1,"a":1}',  # duplicate key
        '{"a":NaN}',
        '{"a":1.50}',  # non-canonical number
        '{"a":1e-07}',
        '{"a":9007199254740993}',  # beyond 2**53
        '{"\ufb33":3,"\U0001f600":2}',  # code-point order, not UTF-16 order
        '{"a":"\\u0041"}',  # needless escape
        '{"a":1}x',
        "",
        '{"a":1',
    ],
)
def test_loads_canonical_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"canonical|JSON|range|NaN|Expecting"):
        loads_canonical(text.encode())


def test_fast_path_matches_the_json_module_for_every_code_point() -> None:
    """orjson (the fast path) renders every string exactly as RFC 8785 / the C encoder."""
    import json

    from signing.canonical import _fast_path_ok

    code_points = [*range(0xD800), *range(0xE000, 0x10000), 0x1F600, 0x10FFFF]
    for start in range(0, len(code_points), 4096):
        chars = [chr(c) for c in code_points[start : start + 4096]]
        value = {"k": chars, "m": {c: i for i, c in enumerate(chars) if ord(c) < 0x10000}}
        expected = json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), sort_keys=True
        ).encode()
        assert _fast_path_ok(value)  # non-BMP characters only in values: still fast
        assert canonical_json(value) == expected
        assert loads_canonical(expected) == value


def test_b64url_decode_bytes_matches_the_str_form() -> None:
    from signing.canonical import b64url_decode_bytes

    for data in [b"", b"\x00", b"\xfb\xff", bytes(range(64))]:
        assert b64url_decode_bytes(b64url_encode(data).encode()) == data
    for bad in [b"a", b"ab=", b"a+b/", b"ab c", b"AB==", b"-_9"]:
        with pytest.raises(ValueError, match="base64url"):
            b64url_decode_bytes(bad)
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode("证照")


def test_circular_values_are_refused_not_walked_forever() -> None:
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(InvalidArgument):
        canonical_json(looped)
    cyclic: dict[str, Any] = {}
    cyclic["a"] = cyclic
    with pytest.raises(InvalidArgument):
        canonical_json(cyclic)


def test_the_key_cache_never_admits_keys_outside_the_bmp() -> None:
    # the same key tuple, asked twice: both times the slow path's UTF-16 order
    value: dict[str, Any] = {"\U0001f600": 1, "\ufb33": 2, "a": [1.5, {"\U0001f600": None}]}
    for _ in range(2):
        assert canonical_json(value) == rfc8785.dumps(value)
        pair = {"\ufb33": 2, "\U0001f600": 1}
        assert canonical_json(pair) == rfc8785.dumps(pair)
        assert canonical_json(pair).startswith('{"\U0001f600"'.encode())
    # floats anywhere below cached keys still take the general path
    licence = {"证照类型": "食品经营许可证", "项目": ["热食类"]}
    assert canonical_json(licence) == rfc8785.dumps(licence)
    assert (
        canonical_json({"证照类型": "x", "项目": [1.0]}) == '{"证照类型":"x","项目":[1]}'.encode()
    )
    with pytest.raises(ValueError, match="canonical"):
        loads_canonical('{"证照类型":"x","项目":[1.0]}'.encode())


@pytest.mark.parametrize(
    "value",
    [
        {"证照类型": "x", "项目": ["热食类", True, None, 7]},
        {"证照类型": "x", "项目": [["热食类", 2.5]]},
        {"证照类型": "x", "项目": [{"名称": 0.1}]},
        {"证照类型": 3.0, "项目": []},
        {"证照类型": "x", "项目": ("元组", 1e21)},
    ],
)
def test_flat_payloads_under_known_keys(value: dict[str, Any]) -> None:
    # the key tuple is cached after the first call: every later one takes the flat check
    for _ in range(3):
        assert canonical_json(value) == rfc8785.dumps(value)
    with pytest.raises(InvalidArgument):
        canonical_json({"证照类型": "x", "项目": [float("nan")]})
