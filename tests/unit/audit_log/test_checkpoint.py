"""C2SP checkpoints, witness cosignatures and the guard against signing forks."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit_log.checkpoint import (
    Checkpoint,
    CheckpointGuard,
    CosignatureSigner,
    CosignatureVerifier,
    check_consistent,
    cosign,
    cosigned_message,
    open_checkpoint,
    open_cosigned_checkpoint,
    sign_checkpoint,
    verify_cosignatures,
)
from audit_log.errors import (
    CheckpointError,
    CosignatureError,
    InconsistentCheckpointError,
    NoteError,
)
from audit_log.merkle import EMPTY_ROOT, CompactRange, MemoryNodeStore, consistency_proof, leaf_hash
from audit_log.note import Ed25519Signer, parse_note, sign_note, verify_note

ORIGIN = "log.example.gov.cn/zhida"
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
ROOT = hashlib.sha256(b"root").digest()
ROOT_B64 = base64.b64encode(ROOT).decode()


@pytest.fixture
def log_key() -> Ed25519Signer:
    return Ed25519Signer.from_seed(ORIGIN, bytes(32))


@pytest.fixture
def witness() -> CosignatureSigner:
    return CosignatureSigner.from_seed("witness.example/w1", bytes(range(32)))


def test_parse_spec_example() -> None:
    cp = Checkpoint.parse(SPEC_BODY)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert base64.b64encode(cp.root_hash).decode() == "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    assert cp.to_text() == SPEC_BODY


@pytest.mark.parametrize("extensions", [(), ("ext one",), ("a", "b c", "— d")])
@pytest.mark.parametrize("size", [0, 1, 10, 2**64 - 1])
def test_round_trip(size: int, extensions: tuple[str, ...]) -> None:
    cp = Checkpoint(ORIGIN, size, ROOT, extensions)
    assert Checkpoint.parse(cp.to_text()) == cp


@pytest.mark.parametrize(
    "text",
    [
        "",
        f"{ORIGIN}\n1\n{ROOT_B64}",  # no final newline
        f"{ORIGIN}\n1\n",  # no root line
        f"\n1\n{ROOT_B64}\n",  # empty origin
        f"{ORIGIN}\n01\n{ROOT_B64}\n",  # leading zero
        f"{ORIGIN}\n+1\n{ROOT_B64}\n",
        f"{ORIGIN}\n-1\n{ROOT_B64}\n",
        f"{ORIGIN}\n 1\n{ROOT_B64}\n",
        f"{ORIGIN}\n1 \n{ROOT_B64}\n",
        f"{ORIGIN}\n\n{ROOT_B64}\n",  # empty size
        f"{ORIGIN}\n\uff11\n{ROOT_B64}\n",  # fullwidth digit
        f"{ORIGIN}\n1_000\n{ROOT_B64}\n",
        f"{ORIGIN}\n{2**64}\n{ROOT_B64}\n",  # beyond uint64
        f"{ORIGIN}\n{'9' * 5000}\n{ROOT_B64}\n",
        f"{ORIGIN}\n1\n{ROOT_B64.rstrip('=')}\n",  # missing padding
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n",  # 31 bytes
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT + b'x').decode()}\n",  # 33 bytes
        f"{ORIGIN}\n1\n%%%%\n",  # not base64
        f"{ORIGIN}\n1\n{ROOT_B64}\n\n",  # empty extension line
        f"{ORIGIN}\n1\n{ROOT_B64}\next\n\n",
        f"{ORIGIN}\r\n1\n{ROOT_B64}\n",  # control character
        f"{ORIGIN}\n1\n{ROOT_B64}\next\twith tab\n",
    ],
)
def test_malformed_checkpoints_are_rejected(text: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.parse(text)


def test_non_canonical_root_base64_is_rejected() -> None:
    root = bytes(31) + b"\x01"  # base64 ends in "E=" ; "F=" decodes to the same bytes
    good = base64.b64encode(root).decode()
    assert good.endswith("E=")
    bad = good[:-2] + "F="
    assert base64.b64decode(bad) == root
    Checkpoint.parse(f"{ORIGIN}\n1\n{good}\n")
    with pytest.raises(CheckpointError, match="canonical"):
        Checkpoint.parse(f"{ORIGIN}\n1\n{bad}\n")


@pytest.mark.parametrize(
    "fields",
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        (ORIGIN, -1, ROOT, ()),
        (ORIGIN, 2**64, ROOT, ()),
        (ORIGIN, True, ROOT, ()),
        (ORIGIN, 1, ROOT[:31], ()),
        (ORIGIN, 1, ROOT, ("",)),
        (ORIGIN, 1, ROOT, ("two\nlines",)),
        (ORIGIN, 1, ROOT, ["not a tuple"]),
    ],
)
def test_invalid_fields_are_rejected(fields: tuple[Any, ...]) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint(*fields)


def test_sign_and_open(log_key: Ed25519Signer) -> None:
    cp = Checkpoint(ORIGIN, 5, ROOT)
    note = sign_checkpoint(cp, [log_key])
    assert note.startswith(cp.to_text() + "\n— " + ORIGIN + " ")
    assert open_checkpoint(note, [log_key.verifier()], origin=ORIGIN) == cp
    with pytest.raises(CheckpointError, match="origin"):
        open_checkpoint(note, [log_key.verifier()], origin="other.example/log")
    stranger = Ed25519Signer.from_seed(ORIGIN, bytes(range(1, 33)))
    with pytest.raises(NoteError):
        open_checkpoint(note, [stranger.verifier()])
    with pytest.raises(NoteError):
        open_checkpoint(note.replace("\n5\n", "\n6\n"), [log_key.verifier()])


def test_signed_non_checkpoint_is_rejected(log_key: Ed25519Signer) -> None:
    note = sign_note("just some text\n", [log_key])
    with pytest.raises(CheckpointError):
        open_checkpoint(note, [log_key.verifier()])


def test_cosignature_key_id_and_message_known_answer(witness: CosignatureSigner) -> None:
    """Key ID uses type byte 0x04; the signed message is the spec's three-part text."""
    public = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
    raw = public.public_bytes_raw()
    expected = hashlib.sha256(b"witness.example/w1\n\x04" + raw).digest()[:4]
    assert witness.key_id == int.from_bytes(expected, "big")
    assert witness.verifier().vkey().startswith(f"witness.example/w1+{expected.hex()}+BA")
    assert cosigned_message(SPEC_BODY, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n" + SPEC_BODY.encode()
    )
    sig = witness.sign_at(SPEC_BODY.encode(), 1679315147)
    assert sig[:8] == (1679315147).to_bytes(8, "big")
    public.verify(sig[8:], b"cosignature/v1\ntime 1679315147\n" + SPEC_BODY.encode())


def test_cosign_round_trip(log_key: Ed25519Signer, witness: CosignatureSigner) -> None:
    note = cosign(sign_checkpoint(Checkpoint(ORIGIN, 3, ROOT), [log_key]), witness, 1700000000)
    lines = note.splitlines()
    assert lines[-1].startswith("— witness.example/w1 ")
    assert len(base64.b64decode(lines[-1].split(" ")[2])) == 4 + 8 + 64
    cp, cosigs = open_cosigned_checkpoint(
        note, [log_key.verifier()], [witness.verifier()], origin=ORIGIN
    )
    assert cp.size == 3
    assert [(c.name, c.key_id, c.timestamp) for c in cosigs] == [
        ("witness.example/w1", witness.key_id, 1700000000)
    ]
    # The witness key is a type 0x04 key: as a plain note key it is unknown.
    with pytest.raises(NoteError):
        verify_note(note, [Ed25519Signer.from_seed(witness.name, bytes(range(32))).verifier()])


def test_tampered_cosignature_is_rejected(
    log_key: Ed25519Signer, witness: CosignatureSigner
) -> None:
    note = cosign(sign_checkpoint(Checkpoint(ORIGIN, 3, ROOT), [log_key]), witness, 1700000000)
    _text, sigs = parse_note(note)
    cosig = sigs[-1]
    later = cosig._replace(signature=(1700000001).to_bytes(8, "big") + cosig.signature[8:])
    for bad in [
        note.replace(cosig.line(), later.line()),  # timestamp changed
        note.replace("\n3\n", "\n4\n", 1),  # checkpoint changed
        note.replace(cosig.line(), cosig._replace(signature=cosig.signature[:-1]).line()),
    ]:
        with pytest.raises(CosignatureError):
            verify_cosignatures(bad, [witness.verifier()])


def test_cosignature_quorum(log_key: Ed25519Signer, witness: CosignatureSigner) -> None:
    second = CosignatureSigner.from_seed("witness.example/w2", bytes(range(2, 34)))
    signed = sign_checkpoint(Checkpoint(ORIGIN, 3, ROOT), [log_key])
    one = cosign(signed, witness, 10)
    with pytest.raises(CosignatureError, match="2 required"):
        verify_cosignatures(one, [witness.verifier(), second.verifier()], quorum=2)
    two = cosign(one, second, 11)
    cosigs = verify_cosignatures(two, [witness.verifier(), second.verifier()], quorum=2)
    assert sorted(c.timestamp for c in cosigs) == [10, 11]
    with pytest.raises(CosignatureError):
        verify_cosignatures(signed, [witness.verifier()])  # no cosignature at all
    with pytest.raises(CosignatureError):
        verify_cosignatures(two, [witness.verifier()], quorum=0)


def test_cosign_rejects_bad_input(log_key: Ed25519Signer, witness: CosignatureSigner) -> None:
    signed = sign_checkpoint(Checkpoint(ORIGIN, 3, ROOT), [log_key])
    for timestamp in (-1, 2**63, True):
        with pytest.raises(CosignatureError):
            cosign(signed, witness, timestamp)
    with pytest.raises(NoteError, match="already has a signature"):
        cosign(cosign(signed, witness, 1), witness, 2)
    with pytest.raises(CheckpointError):
        cosign(sign_note("not a checkpoint\n", [log_key]), witness, 1)


def test_cosignature_verifier_rejects_bad_signatures(witness: CosignatureSigner) -> None:
    verifier = witness.verifier()
    body = SPEC_BODY.encode()
    good = witness.sign_at(body, 5)
    assert verifier.verify(body, good)
    assert not verifier.verify(body, good[:-1])
    assert not verifier.verify(body, b"\xff" * 8 + good[8:])  # timestamp > 2**63-1
    assert not verifier.verify(b"\xff\n", good)
    assert CosignatureVerifier.from_vkey(verifier.vkey()).key_id == witness.key_id
    assert CosignatureSigner.from_skey(witness.skey()).key_id == witness.key_id


# --- the guard -----------------------------------------------------------


class Log:
    """A tiny in-memory log: a tree, its node store, and checkpoints per size."""

    def __init__(self) -> None:
        self.store, self.tree = MemoryNodeStore(), CompactRange()

    def append(self, *entries: bytes) -> Checkpoint:
        for e in entries:
            self.store.put(self.tree.append(leaf_hash(e)))
        return Checkpoint(ORIGIN, self.tree.size, self.tree.root())

    def proof(self, old: Checkpoint, new: Checkpoint) -> list[bytes]:
        if old.size == 0 or old.size == new.size:
            return []
        return consistency_proof(old.size, new.size, self.store)


def test_guard_signs_a_growing_log(log_key: Ed25519Signer) -> None:
    log, guard = Log(), CheckpointGuard()
    previous = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    note, guard = guard.sign(previous, [], [log_key])
    for batch in range(1, 20):
        cp = log.append(*(f"{batch}-{i}".encode() for i in range(batch % 4)))
        note, guard = guard.sign(cp, log.proof(previous, cp), [log_key])
        assert open_checkpoint(note, [log_key.verifier()]) == cp
        assert guard.last == cp
        previous = cp


def test_guard_refuses_forks_and_rollbacks() -> None:
    log, fork = Log(), Log()
    old = log.append(b"a", b"b", b"c")
    new = log.append(b"d", b"e")
    fork.append(b"a", b"b", b"X")
    forked = fork.append(b"d", b"e")
    guard = CheckpointGuard(old)
    guard.check(new, log.proof(old, new))
    guard.check(old, [])  # re-signing the same tree head is consistent
    cases: list[tuple[Checkpoint, list[bytes], str]] = [
        (forked, fork.proof(old, forked), "not consistent"),
        (forked, log.proof(old, new), "not consistent"),
        (Checkpoint(ORIGIN, 3, new.root_hash), [], "different root"),
        (Checkpoint(ORIGIN, 2, old.root_hash), [], "smaller"),
        (Checkpoint("other.example/log", 5, new.root_hash), log.proof(old, new), "origin"),
        (new, [], "not consistent"),
        (new, [b"short"], "not consistent"),
        (Checkpoint(ORIGIN, 0, ROOT), [], "empty root"),
    ]
    for cp, proof, message in cases:
        with pytest.raises(InconsistentCheckpointError, match=message):
            guard.check(cp, proof)


def test_guard_from_empty_tree() -> None:
    check_consistent(None, Checkpoint(ORIGIN, 7, ROOT), [])
    empty = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    check_consistent(empty, Checkpoint(ORIGIN, 7, ROOT), [])
    with pytest.raises(InconsistentCheckpointError):
        check_consistent(empty, Checkpoint(ORIGIN, 7, ROOT), [ROOT])
    with pytest.raises(InconsistentCheckpointError):
        check_consistent(Checkpoint(ORIGIN, 0, ROOT), Checkpoint(ORIGIN, 7, ROOT), [])
