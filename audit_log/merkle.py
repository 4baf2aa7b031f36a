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

import hashlib
import hmac
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from audit_log.errors import ProofError, TreeError, TreeStateError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
# Sizes and indices are uint64 in every wire format we speak (C2SP checkpoints,
# RFC 9162 structures); refusing larger values keeps us interoperable.
MAX_TREE_SIZE = 2**64 - 1

_sha256 = hashlib.sha256
_STATE_VERSION = 1
_STATE_HEADER = struct.Struct(">BQ")  # version byte, tree size


# ``index`` deliberately shadows tuple.index: (level, index) is the RFC vocabulary.
class NodeID(NamedTuple):
    """A perfect subtree: ``level`` 0 is a leaf; it covers 2**level leaves."""

    level: int
    index: int  # type: ignore[assignment]


class NodeHash(NamedTuple):
    """A perfect subtree and its hash, as emitted for storage."""

    level: int
    index: int  # type: ignore[assignment]
    hash: bytes


class HashReader(Protocol):
    """Read access to stored perfect-subtree hashes.

    One batched call per proof so that a database can answer with one query.
    Must return the hashes in the order of ``ids``; raise if one is missing.
    """

    def get_nodes(self, ids: Sequence[NodeID], /) -> Sequence[bytes]: ...


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 §2.1: MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1: SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    return _sha256(b"\x01" + left + right).digest()


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


def _largest_pow2_below(n: int) -> int:
    """k in RFC 9162 §2.1.1: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _perfect_nodes(begin: int, end: int) -> tuple[NodeID, ...]:
    """Split [begin, end) into perfect subtrees, largest first.

    The RFC recursion only yields ranges whose start is aligned to their
    largest power of two, so folding these from the right gives MTH(D[begin:end]).
    """
    nodes = []
    remaining = end - begin
    while remaining:
        level = remaining.bit_length() - 1
        nodes.append(NodeID(level, begin >> level))
        begin += 1 << level
        remaining -= 1 << level
    return tuple(nodes)


def _fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of consecutive perfect subtrees given largest first (right fold)."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


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


def _check_uint64(what: str, value: object, error: type[Exception]) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise error(f"{what} must be an integer, got {type(value).__name__}")
    if not 0 <= value <= MAX_TREE_SIZE:
        raise error(f"{what} {value} is outside 0..2**64-1")
    return value


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


class CompactRange:
    """The right edge ("frontier") of a log: the perfect subtree roots of [0, size).

    Holds one hash per set bit of ``size``, largest subtree first, which is all
    that is needed to append and to compute the root. Persist it with
    :meth:`to_bytes` (or ``size`` + ``hashes``) to restart without rehashing.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        _check_uint64("tree size", size, TreeStateError)
        frontier = list(hashes)
        if len(frontier) != size.bit_count():
            raise TreeStateError(
                f"a tree of size {size} has {size.bit_count()} frontier hashes, got {len(frontier)}"
            )
        for h in frontier:
            if not isinstance(h, bytes) or len(h) != HASH_SIZE:
                raise TreeStateError(f"frontier hash is not {HASH_SIZE} bytes")
        self._size = size
        self._hashes = frontier

    @classmethod
    def from_reader(cls, size: int, reader: HashReader) -> CompactRange:
        """Rebuild the frontier of ``size`` from stored nodes (O(log n) reads)."""
        _check_uint64("tree size", size, TreeError)
        ids = _perfect_nodes(0, size)
        return cls(size, list(reader.get_nodes(ids)) if ids else [])

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactRange:
        if len(data) < _STATE_HEADER.size:
            raise TreeStateError("compact range state is truncated")
        version, size = _STATE_HEADER.unpack_from(data)
        if version != _STATE_VERSION:
            raise TreeStateError(f"unknown compact range state version {version}")
        body = data[_STATE_HEADER.size :]
        if len(body) != HASH_SIZE * size.bit_count():
            raise TreeStateError(f"compact range state has wrong length for size {size}")
        return cls(size, [body[i : i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)])

    def to_bytes(self) -> bytes:
        """Version byte, uint64 size (big-endian), then the frontier hashes."""
        return _STATE_HEADER.pack(_STATE_VERSION, self._size) + b"".join(self._hashes)

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> list[NodeHash]:
        """Add one leaf; return every perfect subtree it completes, leaf first.

        Each returned node is final (its hash never changes) and is exactly
        what a :class:`HashReader` must later serve.
        """
        if not isinstance(leaf_hash, bytes) or len(leaf_hash) != HASH_SIZE:
            raise TreeError(f"leaf hash must be {HASH_SIZE} bytes")
        index = self._size
        if index == MAX_TREE_SIZE:
            raise TreeError("the tree is full (2**64-1 leaves)")
        h, level = leaf_hash, 0
        emitted = [NodeHash(0, index, h)]
        frontier = self._hashes
        while index & 1:  # a right child: merge with its left sibling on the frontier
            h = node_hash(frontier.pop(), h)
            index >>= 1
            level += 1
            emitted.append(NodeHash(level, index, h))
        frontier.append(h)
        self._size += 1
        return emitted

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[NodeHash]:
        emitted: list[NodeHash] = []
        for h in leaf_hashes:
            emitted.extend(self.append(h))
        return emitted

    def root(self) -> bytes:
        """MTH(D[0:size]): the frontier folded from the right (RFC 6962 §2.1)."""
        return _fold(self._hashes) if self._hashes else EMPTY_ROOT

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()[:16]}...)"


class MemoryNodeStore:
    """A dict-backed :class:`HashReader`, for tests, tools and small logs."""

    __slots__ = ("_nodes",)

    def __init__(self) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}

    def put(self, nodes: Iterable[NodeHash]) -> None:
        for level, index, h in nodes:
            self._nodes[(level, index)] = h

    def get_nodes(self, ids: Sequence[NodeID], /) -> list[bytes]:
        try:
            return [self._nodes[i] for i in ids]
        except KeyError as exc:
            raise TreeStateError(f"node {tuple(exc.args[0])} is not stored") from None

    def __len__(self) -> int:
        return len(self._nodes)
