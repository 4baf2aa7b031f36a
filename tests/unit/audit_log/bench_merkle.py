"""Micro-measurement of the Merkle maths (not a test: pytest does not collect it).

Run: ``.venv/bin/python -m tests.unit.audit_log.bench_merkle [leaves] [samples]``

Builds a log of ``leaves`` entries (default 1,000,000) into an in-memory dict of
node hashes, then times inclusion proof generation + verification for random
leaves, and consistency proofs between random sizes.
"""

from __future__ import annotations

import random
import statistics
import sys
import time

from audit_log.merkle import (
    CompactRange,
    MemoryNodeStore,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_at,
    verify_consistency,
    verify_inclusion,
)


def _percentiles(samples_ns: list[int]) -> str:
    ordered = sorted(samples_ns)
    p50 = statistics.median(ordered) / 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] / 1000
    return f"p50 {p50:.1f} µs, p99 {p99:.1f} µs, max {ordered[-1] / 1000:.1f} µs"


def main(leaves: int = 1_000_000, samples: int = 10_000) -> None:
    hashes = [leaf_hash(i.to_bytes(8, "big")) for i in range(leaves)]

    tree = CompactRange()
    start = time.perf_counter()
    for h in hashes[:200_000]:
        tree.append(h)
    rate = 200_000 / (time.perf_counter() - start)
    print(f"CompactRange.append (nodes computed, not stored): {rate:,.0f} leaves/s")

    store, tree = MemoryNodeStore(), CompactRange()
    start = time.perf_counter()
    for h in hashes:
        store.put(tree.append(h))
    elapsed = time.perf_counter() - start
    print(
        f"append + store every node in a dict: {leaves:,} leaves in {elapsed:.2f} s "
        f"= {leaves / elapsed:,.0f} leaves/s ({len(store):,} node hashes)"
    )
    root, size = tree.root(), tree.size

    rng = random.Random(6962)
    gen_ns, total_ns = [], []
    for _ in range(samples):
        index = rng.randrange(size)
        t0 = time.perf_counter_ns()
        proof = inclusion_proof(index, size, store)
        t1 = time.perf_counter_ns()
        verify_inclusion(hashes[index], index, size, proof, root)
        t2 = time.perf_counter_ns()
        gen_ns.append(t1 - t0)
        total_ns.append(t2 - t0)
    print(f"inclusion proof generation ({samples:,} random leaves): {_percentiles(gen_ns)}")
    print(f"inclusion proof generation + verification: {_percentiles(total_ns)}")

    cons_ns = []
    for _ in range(samples // 10):
        size1 = rng.randrange(1, size)
        t0 = time.perf_counter_ns()
        proof = consistency_proof(size1, size, store)
        old_root = root_at(size1, store)
        verify_consistency(size1, size, proof, old_root, root)
        cons_ns.append(time.perf_counter_ns() - t0)
    print(f"consistency proof + old root + verification: {_percentiles(cons_ns)}")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
