"""The compact range of a log and an in-memory node store.

:class:`CompactRange` is the right edge ("frontier") of a log: one hash per set
bit of its size. Appending a leaf returns every perfect subtree it completes
(exactly what a :class:`~audit_log.hashes.HashReader` must later serve), and
the state serialises to a few hundred bytes so a log restarts without
rehashing. :class:`MemoryNodeStore` is a dict-backed reader for tests and tools.

Example::

    >>> from audit_log.hashes import leaf_hash
    >>> store, tree = MemoryNodeStore(), CompactRange()
    >>> for entry in (b"a", b"b", b"c"):
    ...     store.put(tree.append(leaf_hash(entry)))
    >>> tree.size, len(store)
    (3, 4)
    >>> CompactRange.from_bytes(tree.to_bytes()) == tree
    True
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from audit_log.errors import TreeError, TreeStateError
from audit_log.hashes import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_TREE_SIZE,
    HashReader,
    NodeHash,
    NodeID,
    check_uint64,
    fold,
    node_hash,
    perfect_nodes,
)

_STATE_VERSION = 1
_STATE_HEADER = struct.Struct(">BQ")  # version byte, tree size


class CompactRange:
    """The right edge ("frontier") of a log: the perfect subtree roots of [0, size).

    Holds one hash per set bit of ``size``, largest subtree first, which is all
    that is needed to append and to compute the root. Persist it with
    :meth:`to_bytes` (or ``size`` + ``hashes``) to restart without rehashing.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        check_uint64("tree size", size, TreeStateError)
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
        check_uint64("tree size", size, TreeError)
        ids = perfect_nodes(0, size)
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
        return fold(self._hashes) if self._hashes else EMPTY_ROOT

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
