"""Property tests: generated proofs verify, corrupted ones do not, state survives restarts."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_log.errors import ProofError, TreeError, TreeStateError
from audit_log.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MemoryNodeStore,
    NodeID,
    consistency_plan,
    consistency_proof,
    inclusion_plan,
    inclusion_proof,
    leaf_hash,
    root_at,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from tests.unit.audit_log.support import reference_mth

MAX_SIZE = 300
LEAVES = [leaf_hash(i.to_bytes(2, "big")) for i in range(MAX_SIZE)]


def _build(leaves: list[bytes]) -> tuple[MemoryNodeStore, CompactRange]:
    store, tree = MemoryNodeStore(), CompactRange()
    for h in leaves:
        store.put(tree.append(h))
    return store, tree


# One store for the whole 300-leaf log serves proofs for every smaller size
# too: perfect subtrees never change once complete.
STORE, TREE = _build(LEAVES)

sizes = st.integers(min_value=1, max_value=MAX_SIZE)


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(sizes)
    return size, draw(st.integers(min_value=0, max_value=size - 1))


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(sizes)
    return draw(st.integers(min_value=1, max_value=size2)), size2


@given(st.lists(st.binary(max_size=40), max_size=MAX_SIZE))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_roots_agree_with_the_rfc_definition(entries: list[bytes]) -> None:
    hashes = [leaf_hash(e) for e in entries]
    _, tree = _build(hashes)
    expected = reference_mth(hashes)
    assert root_from_leaf_hashes(hashes) == expected
    assert tree.root() == expected
    assert tree.size == len(hashes)


def test_empty_tree_root_is_hash_of_empty_string() -> None:
    assert root_from_leaf_hashes([]) == EMPTY_ROOT == CompactRange().root()
    assert EMPTY_ROOT.hex().startswith("e3b0c442")


@given(size_and_index())
def test_inclusion_proofs_verify(case: tuple[int, int]) -> None:
    size, index = case
    proof = inclusion_proof(index, size, STORE)
    verify_inclusion(LEAVES[index], index, size, proof, root_from_leaf_hashes(LEAVES[:size]))


@given(two_sizes())
def test_consistency_proofs_verify(case: tuple[int, int]) -> None:
    size1, size2 = case
    proof = consistency_proof(size1, size2, STORE)
    root1, root2 = root_from_leaf_hashes(LEAVES[:size1]), root_from_leaf_hashes(LEAVES[:size2])
    verify_consistency(size1, size2, proof, root1, root2)
    assert root_at(size1, STORE) == root1
    assert root_at(size2, STORE) == root2


def _corruptions(proof: list[bytes], data: st.DataObject) -> list[list[bytes]]:
    """A bit flip, a dropped hash, an extra hash, and a reordering (when possible)."""
    bad = []
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        flipped = bytearray(proof[i])
        flipped[bit // 8] ^= 1 << (bit % 8)
        bad.append([*proof[:i], bytes(flipped), *proof[i + 1 :]])
        bad.append(proof[:i] + proof[i + 1 :])
    bad.append([*proof, LEAVES[0]])
    bad.append([LEAVES[0], *proof])
    if len(proof) >= 2 and proof[0] != proof[1]:
        bad.append([proof[1], proof[0], *proof[2:]])
    return bad


@given(size_and_index(), st.data())
def test_corrupted_inclusion_proofs_fail(case: tuple[int, int], data: st.DataObject) -> None:
    size, index = case
    root = root_from_leaf_hashes(LEAVES[:size])
    proof = inclusion_proof(index, size, STORE)
    for bad in _corruptions(proof, data):
        with pytest.raises(ProofError):
            verify_inclusion(LEAVES[index], index, size, bad, root)
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="other")
    with pytest.raises(ProofError):
        verify_inclusion(LEAVES[index], other, size, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(b"not in the log"), index, size, proof, root)


@given(two_sizes(), st.data())
def test_corrupted_consistency_proofs_fail(case: tuple[int, int], data: st.DataObject) -> None:
    size1, size2 = case
    root1, root2 = root_from_leaf_hashes(LEAVES[:size1]), root_from_leaf_hashes(LEAVES[:size2])
    proof = consistency_proof(size1, size2, STORE)
    for bad in _corruptions(proof, data):
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, bad, root1, root2)
    if size1 < size2:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof, root2, root1)
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof, root1, LEAVES[0])


def test_inclusion_with_a_tree_that_forked() -> None:
    """A root over a different history rejects an honest proof."""
    forked = [*LEAVES[:9], leaf_hash(b"rewritten"), *LEAVES[10:20]]
    proof = inclusion_proof(3, 20, STORE)
    with pytest.raises(ProofError):
        verify_inclusion(LEAVES[3], 3, 20, proof, root_from_leaf_hashes(forked))


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.binary(max_size=40),
    st.lists(st.binary(max_size=40), max_size=70),
    st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=3)), max_size=3),
)
hashes_or_junk = st.one_of(st.sampled_from(LEAVES[:4]), junk)
ints_or_junk = st.one_of(st.integers(min_value=0, max_value=20), junk)


@given(hashes_or_junk, ints_or_junk, ints_or_junk, st.one_of(junk, st.just([])), hashes_or_junk)
@settings(max_examples=400)
def test_verify_inclusion_raises_only_proof_error(
    leaf: Any, index: Any, size: Any, proof: Any, root: Any
) -> None:
    with contextlib.suppress(ProofError):
        verify_inclusion(leaf, index, size, proof, root)


@given(ints_or_junk, ints_or_junk, st.one_of(junk, st.just([])), hashes_or_junk, hashes_or_junk)
@settings(max_examples=400)
def test_verify_consistency_raises_only_proof_error(
    size1: Any, size2: Any, proof: Any, root1: Any, root2: Any
) -> None:
    with contextlib.suppress(ProofError):
        verify_consistency(size1, size2, proof, root1, root2)


@given(sizes)
def test_compact_range_serialises_and_restarts(size: int) -> None:
    store, tree = _build(LEAVES[:size])
    restored = CompactRange.from_bytes(tree.to_bytes())
    assert restored == tree == CompactRange(tree.size, tree.hashes)
    assert CompactRange.from_reader(size, store) == tree
    # A restarted log keeps appending to the same tree.
    restored.append(LEAVES[0])
    assert restored.root() == root_from_leaf_hashes([*LEAVES[:size], LEAVES[0]])


@given(sizes)
def test_append_emits_every_perfect_subtree_exactly_once(size: int) -> None:
    tree, emitted = CompactRange(), []
    for h in LEAVES[:size]:
        emitted.extend(tree.append(h))
    ids = [(n.level, n.index) for n in emitted]
    assert len(ids) == len(set(ids)) == 2 * size - size.bit_count()
    for level, index in ids:  # each is complete within the tree
        assert (index + 1) << level <= size


@given(size_and_index())
def test_plans_read_few_stored_nodes(case: tuple[int, int]) -> None:
    size, index = case
    ids = inclusion_plan(index, size).node_ids
    assert len(ids) <= 2 * size.bit_length()  # O(log n) reads
    assert all(isinstance(i, NodeID) and (i.index + 1) << i.level <= size for i in ids)


def test_large_tree_plan_is_logarithmic() -> None:
    plan = inclusion_plan(123_456_789, 2**40 + 12345)
    assert len(plan.segments) <= 41
    assert len(plan.node_ids) <= 2 * 41


@pytest.mark.parametrize(
    ("index", "size"), [(0, 0), (5, 5), (-1, 3), (2**64, 2**64), (True, 3), ("1", 3)]
)
def test_inclusion_plan_rejects_bad_ranges(index: Any, size: Any) -> None:
    with pytest.raises(TreeError):
        inclusion_plan(index, size)


@pytest.mark.parametrize(("size1", "size2"), [(0, 5), (6, 5), (-1, 3), (1, 2**64)])
def test_consistency_plan_rejects_bad_ranges(size1: int, size2: int) -> None:
    with pytest.raises(TreeError):
        consistency_plan(size1, size2)


def test_consistency_of_equal_sizes_is_empty() -> None:
    assert consistency_proof(7, 7, STORE) == []
    root = root_at(7, STORE)
    verify_consistency(7, 7, [], root, root)


def test_missing_node_is_a_tree_state_error() -> None:
    with pytest.raises(TreeStateError):
        inclusion_proof(0, MAX_SIZE + 10, STORE)


def test_bad_reader_output_is_a_tree_state_error() -> None:
    class ShortReader:
        def get_nodes(self, ids: Any, /) -> list[bytes]:
            return [b"short"] * len(ids)

    with pytest.raises(TreeStateError):
        inclusion_proof(0, 8, ShortReader())


@pytest.mark.parametrize(
    "state",
    [b"", b"\x01", b"\x02" + bytes(8), b"\x01" + (3).to_bytes(8, "big") + bytes(32)],
)
def test_corrupt_state_bytes_are_rejected(state: bytes) -> None:
    with pytest.raises(TreeStateError):
        CompactRange.from_bytes(state)


def test_compact_range_rejects_bad_input() -> None:
    with pytest.raises(TreeStateError):
        CompactRange(3, [LEAVES[0]])
    with pytest.raises(TreeError):
        CompactRange().append(b"too short")
    with pytest.raises(TreeError):
        root_from_leaf_hashes([b"x"])
