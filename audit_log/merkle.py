"""RFC 6962 / RFC 9162 Merkle tree maths for the audit log: pure, no I/O.

Hashes are SHA-256 with domain separation (RFC 6962 §2.1): a leaf is
``H(0x00 || data)``, an interior node ``H(0x01 || left || right)``, the empty
tree ``H("")``. A tree of ``n`` leaves splits at the largest power of two
smaller than ``n``, so only *perfect* subtrees ever have a fixed hash; they are
addressed by :class:`NodeID` ``(level, index)``, covering leaves
``[index * 2**level, (index + 1) * 2**level)``. A storage layer keeps exactly
those hashes (emitted by :meth:`CompactRange.append`) and serves proofs in
O(log n) reads through a :class:`HashReader`, never rehashing the log.

Example::

    >>> store, tree = MemoryNodeStore(), CompactRange()
    >>> for entry in (b"a", b"b", b"c"):
    ...     store.put(tree.append(leaf_hash(entry)))
    >>> proof = inclusion_proof(1, tree.size, store)
    >>> verify_inclusion(leaf_hash(b"b"), 1, tree.size, proof, tree.root())
    >>> old_root = root_at(2, store)
    >>> verify_consistency(2, 3, consistency_proof(2, 3, store), old_root, tree.root())
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from audit_log.compact import CompactRange, MemoryNodeStore
from audit_log.errors import ProofError, TreeError, TreeStateError
from audit_log.hashes import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_TREE_SIZE,
    HashReader,
    NodeHash,
    NodeID,
    leaf_hash,
    node_hash,
)
from audit_log.hashes import check_uint64 as _check_uint64
from audit_log.hashes import fold as _fold
from audit_log.hashes import largest_pow2_below as _largest_pow2_below
from audit_log.hashes import perfect_nodes as _perfect_nodes

# Re-exported: the hashing primitives and the compact range have their own
# modules (hashes.py, compact.py) but remain part of this module's API.
__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "CompactRange",
    "HashReader",
    "MemoryNodeStore",
    "NodeHash",
    "NodeID",
    "ProofPlan",
    "consistency_plan",
    "consistency_proof",
    "inclusion_plan",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_at",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of a whole list of leaf hashes, in O(n).

    Pairs nodes level by level and promotes an odd last node unchanged, which
    yields the same tree as RFC 6962's "split at the largest power of two".
    """
    for i, h in enumerate(hashes):
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise TreeError(f"leaf hash {i} is not {HASH_SIZE} bytes")
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form PATH(index, D[size]), leaf side first.

    RFC 9162 §2.1.3.1, unrolled: at each split the sibling range is hashed;
    we descend into the side that holds the leaf.
    """
    ranges = []
    lo, n, m = 0, size, index
    while n > 1:
        k = _largest_pow2_below(n)
        if m < k:
            ranges.append((lo + k, lo + n))
            n = k
        else:
            ranges.append((lo, lo + k))
            lo, m, n = lo + k, m - k, n - k
    ranges.reverse()
    return ranges


def _consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form PROOF(size1, D[size2]), 0 < size1 < size2.

    RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b), unrolled; ``whole`` is the flag b
    ("the subtree is the whole old tree, the verifier already knows it").
    """
    ranges = []
    lo, m, n, whole = 0, size1, size2, True
    while m != n:
        k = _largest_pow2_below(n)
        if m <= k:
            ranges.append((lo + k, lo + n))
            n = k
        else:
            ranges.append((lo, lo + k))
            lo, m, n, whole = lo + k, m - k, n - k, False
    if not whole:
        ranges.append((lo, lo + n))
    ranges.reverse()
    return ranges


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """Which stored nodes a proof needs and how to combine them.

    Each segment is one proof hash: a single perfect subtree, or (at most once
    per proof, on the tree's right edge) several whose fold is the hash of a
    non-perfect subtree. Storage may fetch ``node_ids`` any way it likes (one
    query, async, cached) and hand the hashes to :meth:`assemble`.
    """

    segments: tuple[tuple[NodeID, ...], ...]

    @property
    def node_ids(self) -> tuple[NodeID, ...]:
        return tuple(node for segment in self.segments for node in segment)

    def assemble(self, hashes: Sequence[bytes]) -> list[bytes]:
        """Turn the hashes of ``node_ids`` (same order) into the proof."""
        if len(hashes) != sum(len(segment) for segment in self.segments):
            raise TreeStateError(
                f"node reader returned {len(hashes)} hashes for {len(self.node_ids)} nodes"
            )
        for h in hashes:
            if not isinstance(h, bytes) or len(h) != HASH_SIZE:
                raise TreeStateError(f"node reader returned a hash that is not {HASH_SIZE} bytes")
        proof, at = [], 0
        for segment in self.segments:
            proof.append(_fold(hashes[at : at + len(segment)]))
            at += len(segment)
        return proof


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """The nodes of the inclusion proof of leaf ``index`` in a tree of ``size``."""
    _check_uint64("leaf index", index, TreeError)
    _check_uint64("tree size", size, TreeError)
    if index >= size:
        raise TreeError(f"leaf index {index} is outside a tree of size {size}")
    return ProofPlan(tuple(_perfect_nodes(b, e) for b, e in _inclusion_ranges(index, size)))


def consistency_plan(size1: int, size2: int) -> ProofPlan:
    """The nodes of the consistency proof from ``size1`` to ``size2``.

    Equal sizes need no proof (empty plan). A proof from the empty tree is
    meaningless (every tree extends it) and RFC 9162 verifiers reject it, so
    asking for one is an error, as is ``size1 > size2``.
    """
    _check_uint64("size1", size1, TreeError)
    _check_uint64("size2", size2, TreeError)
    if size1 > size2:
        raise TreeError(f"size1 {size1} is larger than size2 {size2}")
    if size1 == 0:
        raise TreeError("no consistency proof exists from the empty tree")
    if size1 == size2:
        return ProofPlan(())
    return ProofPlan(tuple(_perfect_nodes(b, e) for b, e in _consistency_ranges(size1, size2)))


def inclusion_proof(index: int, size: int, reader: HashReader) -> list[bytes]:
    """PATH(index, D[size]) (RFC 9162 §2.1.3.1) from stored node hashes."""
    plan = inclusion_plan(index, size)
    return plan.assemble(reader.get_nodes(plan.node_ids))


def consistency_proof(size1: int, size2: int, reader: HashReader) -> list[bytes]:
    """PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1) from stored node hashes."""
    plan = consistency_plan(size1, size2)
    return plan.assemble(reader.get_nodes(plan.node_ids)) if plan.segments else []


def root_at(size: int, reader: HashReader) -> bytes:
    """MTH(D[0:size]) of any past or present size, from stored node hashes."""
    _check_uint64("tree size", size, TreeError)
    if size == 0:
        return EMPTY_ROOT
    frontier = _perfect_nodes(0, size)
    return ProofPlan((frontier,)).assemble(reader.get_nodes(frontier))[0]


def _proof_hash(what: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte hash")
    return bytes(value)


def _proof_path(proof: object, expected: int, context: str) -> list[bytes]:
    if isinstance(proof, str | bytes | bytearray) or not isinstance(proof, Sequence):
        raise ProofError("proof must be a sequence of hashes")
    if len(proof) != expected:
        raise ProofError(f"proof has {len(proof)} hashes, expected {expected} for {context}")
    return [_proof_hash(f"proof[{i}]", h) for i, h in enumerate(proof)]


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree ``(size, root)``.

    Follows RFC 9162 §2.1.3.2 step by step; raises :class:`ProofError` (and
    nothing else, whatever the input) unless the proof holds.
    """
    _check_uint64("leaf index", index, ProofError)
    _check_uint64("tree size", size, ProofError)
    if index >= size:  # step 1
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    r = _proof_hash("leaf hash", leaf_hash)  # step 3
    expected_root = _proof_hash("root hash", root)
    context = f"leaf {index} of a tree of size {size}"
    path = _proof_path(proof, len(_inclusion_ranges(index, size)), context)
    fn, sn = index, size - 1  # step 2
    for p in path:  # step 4
        if sn == 0:
            raise ProofError(f"proof is longer than the path of {context}")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:  # climb the right edge: no sibling there
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:  # step 5
        raise ProofError(f"proof is shorter than the path of {context}")
    if not hmac.compare_digest(r, expected_root):
        raise ProofError(f"calculated root does not match the root hash for {context}")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree ``(size2, root2)`` extends ``(size1, root1)``.

    Follows RFC 9162 §2.1.4.2; raises :class:`ProofError` and nothing else.
    """
    _check_uint64("size1", size1, ProofError)
    _check_uint64("size2", size2, ProofError)
    if size2 < size1:
        raise ProofError(f"size2 {size2} is smaller than size1 {size1}")
    if size1 == 0:
        # The empty tree is a prefix of every tree: there is nothing to prove,
        # and accepting a "proof" here would prove nothing (transparency-dev).
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if size1 == size2:
        _proof_path(proof, 0, f"equal sizes {size1}")
        # Equal sizes: the roots are compared as opaque values, whatever
        # their length (as the transparency-dev vectors require).
        if not isinstance(root1, bytes | bytearray) or not isinstance(root2, bytes | bytearray):
            raise ProofError("roots must be bytes")
        if not hmac.compare_digest(bytes(root1), bytes(root2)):
            raise ProofError(f"trees of equal size {size1} have different roots")
        return
    first_hash, second_hash = _proof_hash("root1", root1), _proof_hash("root2", root2)
    context = f"sizes {size1} -> {size2}"
    path = _proof_path(proof, len(_consistency_ranges(size1, size2)), context)
    if not path:  # step 1
        raise ProofError(f"empty consistency proof for {context}")
    if size1 & (size1 - 1) == 0:  # step 2: the old tree is a perfect subtree
        path.insert(0, first_hash)
    fn, sn = size1 - 1, size2 - 1  # step 3
    while fn & 1:  # step 4
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise ProofError(f"proof is longer than needed for {context}")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:  # step 7
        raise ProofError(f"proof is shorter than needed for {context}")
    if not hmac.compare_digest(fr, first_hash):
        raise ProofError(f"proof does not reproduce root1 for {context}")
    if not hmac.compare_digest(sr, second_hash):
        raise ProofError(f"proof does not reproduce root2 for {context}")
