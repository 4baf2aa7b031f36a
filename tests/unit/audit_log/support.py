"""Shared helpers for the audit_log tests: vector files, reference tree, fixed keys."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# <repo root>/../shared/testdata/merkle: the transparency-dev/merkle vectors.
REPO_ROOT = Path(__file__).resolve().parents[3]
VECTOR_DIR = REPO_ROOT.parent / "shared" / "testdata" / "merkle"

# The leaves of the RFC 6962 reference tree that the vectors are computed over
# (the Certificate Transparency test suite's eight inputs).
RFC6962_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]


@dataclass(frozen=True)
class Vector:
    path: Path
    kind: str  # "inclusion" or "consistency"
    data: dict[str, Any]

    @property
    def want_err(self) -> bool:
        return bool(self.data["wantErr"])

    def b(self, key: str) -> bytes:
        return base64.b64decode(self.data[key])

    def proof(self) -> list[bytes]:
        # Go's nil slice marshals as null: an empty proof.
        return [base64.b64decode(p) for p in self.data["proof"] or []]

    def __str__(self) -> str:
        return str(self.path.relative_to(VECTOR_DIR))


def load_vectors() -> list[Vector]:
    """Every JSON vector, or [] if the directory is missing (the caller fails)."""
    if not VECTOR_DIR.is_dir():
        return []
    vectors = []
    for path in sorted(VECTOR_DIR.rglob("*.json")):
        kind = path.relative_to(VECTOR_DIR).parts[0]
        vectors.append(Vector(path, kind, json.loads(path.read_text())))
    return vectors


def reference_mth(hashes: list[bytes]) -> bytes:
    """MTH straight from the RFC 6962 §2.1 recursive definition (test oracle)."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    left, right = reference_mth(hashes[:k]), reference_mth(hashes[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()
