"""Field-level minimisation on the delivery path: only granted, releasable items leave.

The allowed field set is computed once per grant (granted items minus every
item the negative list refuses, so a wrong grant still cannot leak a
negative-listed item); each record then costs one dict comprehension over the
allowed fields. Fields the provider did not send stay absent (never invented).
A record that is not a mapping raises :class:`MalformedRecord` naming its
position, and nothing of the batch is returned.

Example::

    >>> from catalog_registry.negative_list import Decision
    >>> refuse = {"指纹": Decision(False, "《个人信息保护法》第二十八条")}
    >>> check = lambda item: refuse.get(item, Decision(True))
    >>> minimise([{"姓名": "张三", "指纹": b"..", "住址": "武汉"}], {"姓名", "指纹"}, check)
    [{'姓名': '张三'}]
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any

from catalog_registry.negative_list import Decision
from zhida.errors import ErrorCode, ZhidaError

Record = Mapping[str, Any]
NegativeCheck = Callable[[str], Decision]  # e.g. functools.partial(negative.may_release, code)


class MalformedRecord(ZhidaError):
    """The provider sent something that is not a record; nothing of the batch is delivered."""

    code = ErrorCode.INTERNAL
    default_reason = "MALFORMED_RECORD"


class Minimiser:
    """The per-grant projection; call it on each record (streaming) or use :meth:`many`."""

    __slots__ = ("fields", "refused")

    def __init__(self, granted_items: Collection[str], negative_check: NegativeCheck) -> None:
        allowed: list[str] = []
        refused: dict[str, str] = {}
        for name in sorted(granted_items):
            decision = negative_check(name)
            if decision.allowed:
                allowed.append(name)
            else:
                refused[name] = decision.legal_basis
        self.fields: tuple[str, ...] = tuple(allowed)
        self.refused = refused  # item → legal basis, for the delivery log

    def __call__(self, record: object, index: int = 0) -> dict[str, Any]:
        if type(record) is not dict and not isinstance(record, Mapping):
            raise _malformed(record, index)
        return {f: record[f] for f in self.fields if f in record}

    def many(self, records: Iterable[object]) -> list[dict[str, Any]]:
        """All records minimised, or :class:`MalformedRecord` for the first bad one."""
        fields = self.fields
        out: list[dict[str, Any]] = []
        append = out.append
        for index, record in enumerate(records):
            if type(record) is not dict and not isinstance(record, Mapping):
                raise _malformed(record, index)
            append({f: record[f] for f in fields if f in record})
        return out

    def stream(self, records: Iterable[object]) -> Iterator[dict[str, Any]]:
        """Lazily minimised records; raises when it reaches a malformed one."""
        for index, record in enumerate(records):
            yield self(record, index)


def minimise(
    records: Iterable[object], granted_items: Collection[str], negative_check: NegativeCheck
) -> list[dict[str, Any]]:
    """Keep only granted, releasable fields of every record (see the module docstring)."""
    return Minimiser(granted_items, negative_check).many(records)


def _malformed(record: object, index: int) -> MalformedRecord:
    return MalformedRecord(
        f"record {index} from the provider is a {type(record).__name__}, not a mapping",
        metadata={"index": str(index), "type": type(record).__name__},
    )
