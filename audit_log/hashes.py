"""RFC 6962 hashing and perfect-subtree addressing, shared by every tree module.

Hashes are SHA-256 with domain separation (RFC 6962 §2.1): a leaf is
``H(0x00 || data)``, an interior node ``H(0x01 || left || right)``, the empty
tree ``H("")``. Only *perfect* subtrees ever have a fixed hash; they are
addressed by :class:`NodeID` ``(level, index)``, covering leaves
``[index * 2**level, (index + 1) * 2**level)``.

Storage keys a node by one integer, its *flat* (in-order) position
:func:`flat_id`: leaves take the even numbers, a node of level ``l`` sits
between its two halves. A perfect subtree over leaves ``[a, b)`` then owns the
contiguous ids ``[2a, 2b - 1)``, so a verifier can fetch a block with one range
query.

Example::

    >>> leaf_hash(b"").hex()[:16]
    '6e340b9cffb37a98'
    >>> perfect_nodes(0, 7)
    (NodeID(level=2, index=0), NodeID(level=1, index=2), NodeID(level=0, index=6))
    >>> [flat_id(NodeID(0, 0)), flat_id(NodeID(1, 0)), flat_id(NodeID(0, 1)), flat_id(NodeID(2, 0))]
    [0, 1, 2, 3]
    >>> node_id_from_flat(3)
    NodeID(level=2, index=0)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple, Protocol

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
# Sizes and indices are uint64 in every wire format we speak (C2SP checkpoints,
# RFC 9162 structures); refusing larger values keeps us interoperable.
MAX_TREE_SIZE = 2**64 - 1

_sha256 = hashlib.sha256


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


def flat_id(node: NodeID | NodeHash) -> int:
    """The in-order position of a perfect subtree: ``(index << (level + 1)) + 2**level - 1``."""
    level, index = node[0], node[1]
    return (index << (level + 1)) + (1 << level) - 1


def node_id_from_flat(flat: int) -> NodeID:
    """Inverse of :func:`flat_id`: the level is the number of trailing one bits."""
    level = (~flat & (flat + 1)).bit_length() - 1
    return NodeID(level, flat >> (level + 1))


def leaf_range(node: NodeID) -> tuple[int, int]:
    """The leaves ``[begin, end)`` a perfect subtree covers."""
    return node.index << node.level, (node.index + 1) << node.level


def largest_pow2_below(n: int) -> int:
    """k in RFC 9162 §2.1.1: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_nodes(begin: int, end: int) -> tuple[NodeID, ...]:
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


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of consecutive perfect subtrees given largest first (right fold)."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def check_uint64(what: str, value: object, error: type[Exception]) -> int:
    """``value`` if it is an int in 0..2**64-1, else raise ``error`` naming ``what``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise error(f"{what} must be an integer, got {type(value).__name__}")
    if not 0 <= value <= MAX_TREE_SIZE:
        raise error(f"{what} {value} is outside 0..2**64-1")
    return value
