"""Minimisation: only granted fields leave, negative-listed ones never, bad records refused."""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Any

import pytest

from catalog_registry.sample_data import PIPL_28
from exchange.minimise import MalformedRecord, Minimiser, minimise
from tests.unit.exchange.conftest import CONDITIONAL, World
from zhida.errors import ErrorCode

RECORD = {"姓名": "张三", "公民身份号码": "420102199001011234", "指纹": b"\x01", "住址": "武汉"}


def test_keeps_only_granted_fields(world: World) -> None:
    check = functools.partial(world.negative.may_release, CONDITIONAL)
    out = minimise([RECORD, {"姓名": "李四"}], frozenset({"姓名", "公民身份号码"}), check)
    assert out == [{"姓名": "张三", "公民身份号码": "420102199001011234"}, {"姓名": "李四"}]


def test_negative_listed_items_never_leave_even_if_granted(world: World) -> None:
    check = functools.partial(world.negative.may_release, CONDITIONAL)
    m = Minimiser({"姓名", "指纹"}, check)
    assert m.fields == ("姓名",)
    assert m.refused == {"指纹": PIPL_28}
    assert m(RECORD) == {"姓名": "张三"}


def test_any_mapping_is_accepted_and_output_is_a_fresh_dict(world: World) -> None:
    check = functools.partial(world.negative.may_release, CONDITIONAL)
    src: OrderedDict[str, Any] = OrderedDict(RECORD)
    (out,) = minimise([src], {"住址"}, check)
    assert out == {"住址": "武汉"}
    assert type(out) is dict


@pytest.mark.parametrize("bad", [["姓名", "张三"], "姓名=张三", None, 42, ("a", 1)])
def test_malformed_records_are_refused_whole_batch(world: World, bad: object) -> None:
    check = functools.partial(world.negative.may_release, CONDITIONAL)
    with pytest.raises(MalformedRecord) as err:
        minimise([RECORD, bad, RECORD], {"姓名"}, check)
    assert err.value.reason == "MALFORMED_RECORD"
    assert err.value.code is ErrorCode.INTERNAL
    assert err.value.metadata["index"] == "1"


def test_stream_yields_until_the_malformed_record(world: World) -> None:
    check = functools.partial(world.negative.may_release, CONDITIONAL)
    stream = Minimiser({"姓名"}, check).stream([RECORD, 7])
    assert next(stream) == {"姓名": "张三"}
    with pytest.raises(MalformedRecord):
        next(stream)
