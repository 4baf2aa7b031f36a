"""Re-check the stored log against its latest signed checkpoint; name the first bad entry.

The event rows are the authority: :func:`verify_log` streams them in index
order (chunks of ``chunk`` entries), recomputes every leaf hash from the
stored bytes, rebuilds the tree bottom-up and compares each recomputed node
with the stored one, then recomputes the root the checkpoint signed. The first
problem, by entry index, is reported with what is wrong:

``missing``   an entry is absent (a deleted row);
``format``    the bytes are not a canonical event;
``columns``   the indexed search columns disagree with the bytes;
``moved``     the entry holds another index's event (rows reordered);
``altered``   the bytes no longer hash to the stored leaf (an edited event);
``node``      a stored node hash is wrong while the entries below it are fine;
``root``      every row is self-consistent but the root is not the signed one
              (events and nodes rewritten together: only the signature catches it);
``state``     the stored tree state (what the next append builds on) is wrong;
``checkpoint`` the latest checkpoint does not verify.

An edited event changes its leaf hash and every ancestor; the ancestors'
mismatches are explained by the leaf and not reported again. An edited leaf
*node* leaves the event's parent intact, which is how the two are told apart.
A partial range ``[start, end)`` is checked the same way and then tied to the
checkpoint through the stored hashes of the rest of the tree.

Example::

    result = verify_log(log, progress=lambda done, total: print(done, total))
    if not result.ok:
        print(f"entry {result.problem.index}: {result.problem.message}")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from audit_log.checkpoint import Checkpoint
from audit_log.compact import CompactRange
from audit_log.errors import AuditLogError, TreeStateError
from audit_log.events import EventFormatError, decode_event
from audit_log.hashes import (
    NodeID,
    flat_id,
    fold,
    leaf_hash,
    leaf_range,
    node_hash,
    node_id_from_flat,
    perfect_nodes,
)
from audit_log.log import AuditLog, bad_argument
from audit_log.merkle import root_at
from audit_log.storage import LogStorage, SearchColumns, StoredEvent
from zhida.errors import ZhidaError

DEFAULT_CHUNK = 4096
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong: the entry index it concerns, a kind, a message."""

    index: int
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    checkpoint: Checkpoint | None
    start: int
    end: int
    checked: int
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


class _Found(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def _aligned_blocks(start: int, end: int) -> list[NodeID]:
    """[start, end) as maximal aligned perfect subtrees, left to right."""
    blocks = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else 63
        while (1 << level) > end - start:
            level -= 1
        blocks.append(NodeID(level, start >> level))
        start += 1 << level
    return blocks


def verify_log(
    log: AuditLog,
    *,
    start: int = 0,
    end: int | None = None,
    chunk: int = DEFAULT_CHUNK,
    progress: Progress | None = None,
) -> VerifyResult:
    """Verify entries ``[start, end)`` (default: all the latest checkpoint covers)."""
    try:
        signed = log.latest_checkpoint()
    except ZhidaError as exc:
        return VerifyResult(None, start, start, 0, Problem(0, "checkpoint", exc.message))
    if signed is None:
        checkpoint = None
        head = log.storage.tree_head()
        size, root = head.size, head.root_hash  # nothing signed yet: check the tree head
    else:
        checkpoint = signed.checkpoint
        size, root = checkpoint.size, checkpoint.root_hash
    end = size if end is None else end
    if not 0 <= start <= end:
        raise bad_argument("from", f"{start} must be in 0..{end}")
    if end > size:
        raise bad_argument("to", f"{end} is beyond the signed tree (size {size})")
    if chunk < 2 or chunk & (chunk - 1):
        raise ValueError("chunk must be a power of two >= 2")
    checker = _Checker(log.storage, start, end, chunk, progress)
    try:
        checker.run()
        checker.check_root(size, root)
        if start == 0 and end == size:
            checker.check_state()
    except _Found as found:
        return VerifyResult(checkpoint, start, end, checker.checked, found.problem)
    return VerifyResult(checkpoint, start, end, checker.checked, None)


class _Checker:
    def __init__(
        self, storage: LogStorage, start: int, end: int, chunk: int, progress: Progress | None
    ) -> None:
        self.storage, self.start, self.end, self.chunk = storage, start, end, chunk
        self.progress = progress
        self.checked = 0
        self.blocks = {flat_id(b): b for b in _aligned_blocks(start, end)}
        self.block_hashes: dict[int, bytes] = {}

    def run(self) -> None:
        try:
            tree = CompactRange.from_reader(self.start, self.storage)
        except TreeStateError as exc:
            message = f"the tree before entry {self.start}: {exc}"
            raise _Found(Problem(self.start, "node", message)) from None
        at = self.start
        while at < self.end:
            stop = min(self.end, (at // self.chunk + 1) * self.chunk)
            self._chunk(tree, at, stop)
            self.checked = stop - self.start
            if self.progress is not None:
                self.progress(self.checked, self.end - self.start)
            at = stop

    def _chunk(self, tree: CompactRange, begin: int, stop: int) -> None:
        rows = self.storage.read_events(begin, stop)
        row_problems, hashes = _check_rows(rows, begin, stop)
        computed: dict[int, bytes] = {}
        for h in hashes:
            for node in tree.append(h):
                computed[flat_id(node)] = node.hash
        # One chunk of look-ahead: a swapped entry's own leaf hash is found there.
        ahead = min(self.end, stop + self.chunk)
        stored = self.storage.node_block(2 * begin, 2 * ahead)
        outside = [f for f in computed if f not in stored]
        stored.update(self.storage.node_hashes(outside))
        for f in self.blocks.keys() & computed.keys():
            self.block_hashes[f] = computed[f]
        found = [*row_problems, *_classify(computed, stored, begin, ahead)]
        if found:
            # At one index the edit itself outranks its symptoms (columns, nodes).
            raise _Found(min(found, key=lambda p: (p.index, _RANK.get(p.kind, 0))))

    def _subtree(self, node: NodeID) -> bytes:
        """Hash of ``node``: recomputed inside the range, stored outside, combined across."""
        f = flat_id(node)
        if f in self.block_hashes:
            return self.block_hashes[f]
        first, last = leaf_range(node)
        if last <= self.start or first >= self.end:
            return self.storage.get_nodes([node])[0]
        left, right = (
            NodeID(node.level - 1, 2 * node.index),
            NodeID(node.level - 1, 2 * node.index + 1),
        )
        return node_hash(self._subtree(left), self._subtree(right))

    def check_root(self, size: int, root: bytes) -> None:
        if size == 0:
            return
        try:
            computed = fold([self._subtree(n) for n in perfect_nodes(0, size)])
        except AuditLogError as exc:
            raise _Found(Problem(self.start, "node", f"cannot rebuild the root: {exc}")) from None
        if computed != root:
            raise _Found(
                Problem(
                    self.start,
                    "root",
                    f"entries {self.start}..{self.end - 1} and their nodes agree with each other "
                    f"but not with the signed root of size {size}: rewritten together",
                )
            )

    def check_state(self) -> None:
        head = self.storage.tree_head()
        try:
            stored_root = root_at(head.size, self.storage)
        except AuditLogError as exc:
            raise _Found(Problem(head.size, "state", f"tree state unreadable: {exc}")) from None
        if stored_root != head.root_hash:
            raise _Found(
                Problem(head.size, "state", f"the stored tree state of size {head.size} is wrong")
            )


_RANK = {"columns": 1, "node": 2}


def _check_rows(
    rows: list[StoredEvent], begin: int, stop: int
) -> tuple[list[Problem], list[bytes]]:
    """Row-level problems, and the leaf hashes of the rows before the first unusable one.

    Wrong search columns do not stop hashing: the bytes may still be intact.
    """
    problems: list[Problem] = []
    hashes: list[bytes] = []
    expected = begin
    for row in rows:
        if row.index != expected:
            break
        try:
            event = decode_event(row.leaf)
        except EventFormatError as exc:
            problems.append(Problem(row.index, "format", f"entry {row.index} is unreadable: {exc}"))
            return problems, hashes
        columns = SearchColumns.of(event)
        if columns != row.columns and not problems:
            wrong = [n for n in columns.__slots__ if getattr(columns, n) != getattr(row.columns, n)]
            message = f"entry {row.index}: search columns {wrong} disagree with the event"
            problems.append(Problem(row.index, "columns", message))
        hashes.append(leaf_hash(row.leaf))
        expected += 1
    if expected < stop:
        problems.append(Problem(expected, "missing", f"entry {expected} is missing (deleted)"))
    return problems, hashes


def _classify(
    computed: dict[int, bytes], stored: dict[int, bytes], begin: int, stop: int
) -> list[Problem]:
    """Every unexplained mismatch between recomputed and stored nodes."""
    bad = {f for f, h in computed.items() if stored.get(f) != h}
    if not bad:
        return []
    leaf_owner = {stored[2 * i]: i for i in range(begin, stop) if 2 * i in stored}
    problems = []
    for f in bad:
        node = node_id_from_flat(f)
        first = leaf_range(node)[0]
        if node.level == 0:
            parent = flat_id(NodeID(1, node.index >> 1))
            if parent in computed and parent not in bad:
                what = "is missing" if f not in stored else "was altered"
                problems.append(Problem(first, "node", f"stored leaf hash of entry {first} {what}"))
            elif (other := leaf_owner.get(computed[f])) is not None and other != first:
                message = f"entry {first} holds the event stored for entry {other} (reordered)"
                problems.append(Problem(first, "moved", message))
            else:
                message = f"entry {first} does not match its stored leaf hash (event edited)"
                problems.append(Problem(first, "altered", message))
            continue
        children = (flat_id(NodeID(node.level - 1, 2 * node.index + k)) for k in (0, 1))
        if any(c in bad for c in children):
            continue  # explained by a child
        what = "is missing" if f not in stored else "was altered"
        problems.append(Problem(first, "node", f"stored node {tuple(node)} {what}"))
    return problems
