"""In-place minimisation: whatever the shape of the records, nothing not allowed is left."""

from __future__ import annotations

import random

import pytest

from exchange.minimise import MalformedRecord
from exchange.projection import MAX_LEARNED, Projector
from zhida.provider.v1 import data_provider_service_pb2 as ppb

ALLOWED = frozenset({"代码", "名称", "住所"})


def test_random_shapes_never_leak() -> None:
    rng = random.Random(7)
    names = [*ALLOWED, "身份证号", "电话", "备注", *(f"x{i}" for i in range(100))]
    projector = Projector(ALLOWED)
    for _ in range(20):
        batch = []
        expected = []
        for n in range(50):
            fields = {name: f"v{n}-{name}" for name in rng.sample(names, rng.randint(1, 12))}
            key_source = rng.choice([*fields, None])
            key = fields[key_source] if key_source else f"k{n}"
            batch.append(ppb.Record(key=key, fields=fields))
            kept = {k: v for k, v in fields.items() if k in ALLOWED}
            expected.append((key if key in kept.values() else "", kept))
        assert projector.records(batch) == 50
        assert [(r.key, dict(r.fields)) for r in batch] == expected
    assert len(projector._extras) <= MAX_LEARNED


def test_the_key_follows_whichever_item_carries_it() -> None:
    projector = Projector(ALLOWED)
    batch = [
        ppb.Record(key="A", fields={"代码": "A", "名称": "甲"}),
        ppb.Record(key="乙", fields={"代码": "B", "名称": "乙"}),  # keyed by name now
        ppb.Record(key="secret", fields={"代码": "C", "身份证号": "secret"}),
    ]
    projector.records(batch)
    assert [r.key for r in batch] == ["A", "乙", ""]
    assert "身份证号" not in batch[2].fields


def test_a_record_without_key_fails_the_batch() -> None:
    with pytest.raises(MalformedRecord) as caught:
        Projector(ALLOWED).records([ppb.Record(key="a"), ppb.Record(fields={"代码": "x"})])
    assert caught.value.metadata == {"index": "1"}
    assert "x" not in caught.value.message
