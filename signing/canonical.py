"""Canonical JSON (RFC 8785, JCS) and strict base64url, the bytes zhida signs.

:func:`canonical_json` renders a JSON value the one way RFC 8785 allows, so
the same licence always produces the same signed bytes. Values made only of
objects with string keys, arrays, strings, booleans, null and integers of
magnitude ≤ 2**53 take a fast path through ``orjson``, whose sorted compact
output for exactly these types is RFC 8785's (keys sorted, no whitespace,
minimal escapes, UTF-8); keys outside the Basic Multilingual Plane and floats
(ECMAScript number formatting) go through the ``rfc8785`` package.

:func:`b64url_decode` accepts only the unpadded canonical base64url encoding
(RFC 7515 §2): a string whose unused trailing bits are not zero, and so would
decode to the same bytes as another string, is refused.

Example::

    >>> canonical_json({"b": [1, True, None], "a": "证照"})
    b'{"a":"\\xe8\\xaf\\x81\\xe7\\x85\\xa7","b":[1,true,null]}'
    >>> b64url_decode(b64url_encode(b"\\x00\\xff"))
    b'\\x00\\xff'
"""

from __future__ import annotations

import binascii
import json
import re
from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]
from typing import Any

import orjson
import rfc8785

from zhida.errors import InvalidArgument

__all__ = [
    "b64url_decode",
    "b64url_decode_bytes",
    "b64url_encode",
    "b64url_encode_bytes",
    "canonical_json",
    "loads_canonical",
    "loads_strict",
]

_MAX_SAFE_INT = 2**53 - 1
_URL_TO_STD = bytes.maketrans(b"-_+/=", b"+/***")
_NON_BMP = re.compile("[\U00010000-\U0010ffff]")
_B64URL_VALUE = {  # by byte value
    c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
}
_PADDING = (b"", b"===", b"==", b"=")


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of ``value``; InvalidArgument if not JSON."""
    try:
        if type(value) in _CONTAINERS:
            # orjson first: it refuses circular and over-deep values (and big
            # integers) before the walk, which then needs no size bound.
            try:
                rendered = orjson.dumps(value, option=_ORJSON)
            except orjson.JSONEncodeError:
                pass  # decided below
            else:
                if _no_floats(value):
                    return rendered
        if _fast_path_ok(value):
            return orjson.dumps(value, option=_ORJSON)
        return rfc8785.dumps(value)
    except (
        TypeError,
        ValueError,
        UnicodeEncodeError,
        orjson.JSONEncodeError,
        rfc8785.CanonicalizationError,
    ) as exc:
        raise InvalidArgument(
            f"value cannot be rendered as canonical JSON: {exc}", reason="NOT_CANONICAL_JSON"
        ) from None


def _refuse(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not a JSON type")


# For the values _fast_path_ok admits, orjson's sorted compact output is
# byte-for-byte RFC 8785 (checked for every code point in the unit tests) at a
# tenth of the json module's cost. STRICT_INTEGER: ints beyond 2**53 raise.
_ORJSON = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER

# Passthrough: subclasses, dataclasses and datetimes raise instead of being
# rendered, so they take the general path (which refuses what is not JSON).
# orjson still renders enums and UUIDs by value.
_ORJSON |= (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
# The fast path needs two facts, found by one walk over the containers
# (exact types, a set per container): no floats (ECMAScript number formatting
# differs from orjson's, and orjson writes NaN as null) and no key outside
# the Basic Multilingual Plane (JCS sorts keys by UTF-16 code units).
_LEAVES = frozenset({str, int, bool, type(None)})
_KNOWN = frozenset({str, bool, type(None), int, dict, list, tuple})
_LEAVES_OR_LIST = _LEAVES | {list}
_CONTAINERS = frozenset({dict, list, tuple})
# Key tuples (exact str keys, in order) already found free of non-BMP
# characters: licence payloads repeat theirs, and a set lookup costs less than
# joining the keys and searching them. Bounded in entries and entry size.
_BMP_KEYS: set[tuple[str, ...]] = set()
_BMP_KEYS_MAX = 1024
_BMP_KEY_COUNT = 64
# Dict shapes found "flat" before — (key tuple, value types), the values scalars
# and lists — mapped to the keys of their lists: a payload of a known shape has
# BMP keys and no float except, possibly, inside those lists. Licence payloads
# repeat their shape; one lookup costs less than looking at each value.
_SHAPES: dict[tuple[tuple[str, ...], tuple[type, ...]], tuple[str, ...]] = {}
_SHAPES_MAX = 1024


def _no_floats(value: Any) -> bool:
    """True when ``value`` holds only dicts (BMP string keys), lists, tuples, str,
    int, bool and None. TypeError for a non-string key.

    The caller bounds the depth and rules out cycles (orjson has rendered or
    parsed ``value``). A dict of the same shape as one found flat before (see
    :data:`_SHAPES`) needs only its lists looked at; anything else is walked.
    """
    if type(value) is not dict:
        return _walk(value)
    shape = (tuple(value), tuple(map(type, value.values())))
    lists = _SHAPES.get(shape)
    if lists is not None:
        for key in lists:
            if not set(map(type, value[key])) <= _LEAVES:
                return _walk(value)
        return True
    if not _walk(value):
        return False
    kinds = set(shape[1])
    if kinds <= _LEAVES_OR_LIST and len(value) <= _BMP_KEY_COUNT:
        if len(_SHAPES) >= _SHAPES_MAX:
            _SHAPES.clear()
        _SHAPES[shape] = tuple(k for k, v in value.items() if type(v) is list)
    return True


def _walk(value: Any) -> bool:
    """:func:`_no_floats` by walking every container: one set of the children's
    types each, and a look at each child only when that set holds a container type."""
    stack: list[Any] | None = None
    item = value
    while True:
        if type(item) is dict:
            names = tuple(item)  # hashed from the keys' cached hashes
            if names not in _BMP_KEYS:
                keys = "".join(names)  # TypeError for a non-string key
                # JCS sorts keys by UTF-16 code units, orjson by code points:
                # the orders differ only for characters outside the BMP.
                if not keys.isascii() and _NON_BMP.search(keys):
                    return False
                if len(names) <= _BMP_KEY_COUNT:
                    if len(_BMP_KEYS) >= _BMP_KEYS_MAX:
                        _BMP_KEYS.clear()
                    _BMP_KEYS.add(names)
            children: Any = item.values()
        else:
            children = item
        kinds = set(map(type, children))
        if not kinds <= _LEAVES:
            if not kinds <= _KNOWN:
                return False  # floats (ECMAScript formatting, NaN) and other types
            found = [c for c in children if type(c) in _CONTAINERS]
            if stack is None:
                stack = found
            else:
                stack += found
        if not stack:
            return True
        item = stack.pop()


# The C encoder json.dumps(ensure_ascii=False, separators=(",", ":"),
# sort_keys=True, allow_nan=False) builds per call, built once. Without its
# circular-reference check: _fast_path_ok bounds the size first.
_ENCODE = c_make_encoder(None, _refuse, c_encode_basestring, None, ":", ",", True, False, False)
_SCALARS = frozenset({str, bool, type(None)})
_MAX_NODES = 1_000_000


def _fast_path_ok(value: Any) -> bool:
    """True when the C encoder's output is exactly RFC 8785's for ``value``.

    Exact types only: anything else (floats, subclasses, other mappings) takes
    the slow path, which formats or refuses it. Raises TypeError for
    non-string keys and ValueError for out-of-range integers or huge values.
    Works per container, not per scalar, to stay cheap.
    """
    kind = type(value)
    if kind not in _CONTAINERS:
        return _fast_path_ok([value])
    stack = [value]
    nodes = 0
    while stack:
        item = stack.pop()
        if type(item) is dict:
            keys = "".join(item)  # TypeError for a non-string key
            # JCS sorts keys by UTF-16 code units, Python by code points: the
            # orders differ only for characters outside the BMP.
            if not keys.isascii() and _NON_BMP.search(keys):
                return False
            children: Any = item.values()
        else:
            children = item
        nodes += len(children)
        if nodes > _MAX_NODES:
            raise ValueError("value too large (or circular)")
        kinds = set(map(type, children))
        if kinds <= _SCALARS:
            continue
        if not kinds <= _KNOWN:
            return False  # floats and other types: the slow path decides
        if int in kinds:
            for child in children:
                if type(child) is int and not -_MAX_SAFE_INT <= child <= _MAX_SAFE_INT:
                    raise ValueError(f"integer {child} is outside the I-JSON range ±(2**53-1)")
        if kinds & _CONTAINERS:
            stack.extend([c for c in children if type(c) in _CONTAINERS])
    return True


class _NeedsFullCheck(Exception):
    """A float or a large integer: let the general path judge the value."""


def _parse_float(text: str) -> Any:
    raise _NeedsFullCheck


def _parse_int(text: str) -> int:
    value = int(text)
    if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
        return value
    raise _NeedsFullCheck


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_SCAN_CANONICAL = json.JSONDecoder(
    parse_float=_parse_float, parse_int=_parse_int, parse_constant=_no_constants
).scan_once  # type: ignore[attr-defined]


def loads_canonical(data: bytes) -> Any:
    """Parse ``data`` if it is exactly the RFC 8785 form of its value; ValueError if not.

    Being canonical also rules out duplicate keys, NaN/Infinity, whitespace,
    and any second encoding of the same value.
    """
    if data[:1] in (b"{", b"["):
        try:
            value = orjson.loads(data)  # invalid UTF-8, lone surrogates: the slow path decides
            again = orjson.dumps(value, option=_ORJSON) if _no_floats(value) else None
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # big integers raise
            again = None
        if again is not None:
            # duplicate keys collapse in parsing, so the re-encoding no longer matches
            if again != data:
                raise ValueError("not in RFC 8785 canonical form")
            return value
    text = data.decode("utf-8")
    try:
        value, end = _SCAN_CANONICAL(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    except _NeedsFullCheck:
        pass
    else:
        if text.isascii() or not _NON_BMP.search(text):
            if end != len(text) or "".join(_ENCODE(value, 0)) != text:
                raise ValueError("not in RFC 8785 canonical form")
            return value
    value = loads_strict(data)
    try:
        canonical = canonical_json(value)
    except InvalidArgument as exc:
        raise ValueError(exc.message) from None
    if canonical != data:
        raise ValueError("not in RFC 8785 canonical form")
    return value


def loads_strict(data: bytes) -> Any:
    """Parse UTF-8 JSON, refusing duplicate keys and NaN/Infinity."""
    return json.loads(
        data.decode("utf-8"),
        object_pairs_hook=_no_duplicates,
        parse_constant=_no_constants,
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate object key")
    return obj


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return b64url_encode_bytes(data).decode("ascii")


def b64url_encode_bytes(data: bytes) -> bytes:
    """Unpadded base64url as ASCII bytes (no str round trip on the signing path)."""
    # two replace passes (memchr-driven) cost half a translate pass
    encoded = binascii.b2a_base64(data, newline=False).replace(b"+", b"-").replace(b"/", b"_")
    return encoded.rstrip(b"=")


def b64url_decode(text: str) -> bytes:
    """Decode canonical unpadded base64url; ValueError for anything else."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not base64url: {exc}") from None
    return b64url_decode_bytes(raw)


def b64url_decode_bytes(raw: bytes) -> bytes:
    """:func:`b64url_decode` of ASCII bytes."""
    rest = len(raw) % 4
    if rest == 1:
        raise ValueError("not unpadded base64url")
    # The last character of a 2- or 3-character group carries 4 or 2 unused
    # bits, which must be zero: otherwise another string decodes the same.
    if rest and _B64URL_VALUE.get(raw[-1], 0) & (0b1111 if rest == 2 else 0b11):
        raise ValueError("non-canonical base64url (unused bits set)")
    try:
        # one pass maps the URL alphabet to the standard one and "+", "/", "="
        # to "*", which strict decoding refuses with every other stray character
        return binascii.a2b_base64(raw.translate(_URL_TO_STD) + _PADDING[rest], strict_mode=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64url: {exc}") from None
