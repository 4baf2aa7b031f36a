"""C2SP signed notes: round trips, tampering, key handling, strict parsing."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit_log.errors import NoteError
from audit_log.note import (
    ALG_ED25519,
    Ed25519Signer,
    Ed25519Verifier,
    add_signatures,
    parse_note,
    parse_vkey,
    sign_note,
    verify_note,
)

SEED = bytes(range(32))
NAME = "log.example.gov.cn/zhida"
TEXT = "zhida audit log\n42\n\nblank lines are allowed in the text\n"


@pytest.fixture
def signer() -> Ed25519Signer:
    return Ed25519Signer.from_seed(NAME, SEED)


@pytest.fixture
def other() -> Ed25519Signer:
    return Ed25519Signer.from_seed("witness.example/w1", bytes(32))


def test_key_id_known_answer() -> None:
    """Key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4], computed independently."""
    public = Ed25519PrivateKey.from_private_bytes(SEED).public_key().public_bytes_raw()
    expected = hashlib.sha256(NAME.encode() + b"\n" + b"\x01" + public).digest()[:4]
    key = Ed25519Signer.from_seed(NAME, SEED)
    assert key.key_id == int.from_bytes(expected, "big")
    assert key.public_key == public
    public_b64 = base64.b64encode(b"\x01" + public).decode()
    assert key.verifier().vkey() == f"{NAME}+{expected.hex()}+{public_b64}"
    seed_b64 = base64.b64encode(b"\x01" + SEED).decode()
    assert key.skey() == f"PRIVATE+KEY+{NAME}+{expected.hex()}+{seed_b64}"


def test_interoperates_with_the_go_reference_example() -> None:
    """The example key and signature from golang.org/x/mod/sumdb/note's documentation."""
    skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    text = (
        "If you think cryptography is the answer to your problem,\n"
        "then you don't know what your problem is.\n"
    )
    signed = (
        text + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXg"
        "KvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    )
    signer = Ed25519Signer.from_skey(skey)
    assert signer.verifier().vkey() == vkey
    assert signer.skey() == skey
    assert sign_note(text, [signer]) == signed
    assert verify_note(signed, [Ed25519Verifier.from_vkey(vkey)]).text == text


def test_round_trip(signer: Ed25519Signer) -> None:
    note = sign_note(TEXT, [signer])
    assert note.startswith(TEXT + "\n— " + NAME + " ")
    verified = verify_note(note, [signer.verifier()])
    assert verified.text == TEXT
    assert [v.name for v in verified.verifiers] == [NAME]
    assert verified.unknown == ()


def test_two_signers_and_unknown_key_ignored(signer: Ed25519Signer, other: Ed25519Signer) -> None:
    note = sign_note(TEXT, [signer, other])
    verified = verify_note(note, [signer.verifier()])
    assert [s.name for s in verified.unknown] == [other.name]
    both = verify_note(note, [signer.verifier(), other.verifier()])
    assert {v.name for v in both.verifiers} == {NAME, other.name}


def test_same_name_other_key_is_unknown(signer: Ed25519Signer) -> None:
    impostor = Ed25519Signer.from_seed(NAME, bytes(32))
    note = sign_note(TEXT, [impostor])
    with pytest.raises(NoteError, match="no signature from a known key"):
        verify_note(note, [signer.verifier()])


def test_tampered_text_is_rejected(signer: Ed25519Signer) -> None:
    note = sign_note(TEXT, [signer])
    with pytest.raises(NoteError, match="invalid"):
        verify_note(note.replace("42", "43", 1), [signer.verifier()])


def test_bad_signature_from_known_key_rejects_note(
    signer: Ed25519Signer, other: Ed25519Signer
) -> None:
    """Even if another known key signed correctly (signed-note §Signatures)."""
    good = sign_note(TEXT, [other])
    _text, sigs = parse_note(sign_note(TEXT, [signer]))
    forged = bytearray(sigs[0].signature)
    forged[0] ^= 1
    bad_line = sigs[0]._replace(signature=bytes(forged)).line()
    with pytest.raises(NoteError, match="invalid"):
        verify_note(good + bad_line, [signer.verifier(), other.verifier()])


def test_add_signatures_keeps_existing(signer: Ed25519Signer, other: Ed25519Signer) -> None:
    note = add_signatures(sign_note(TEXT, [signer]), [other])
    assert verify_note(note, [signer.verifier(), other.verifier()]).text == TEXT
    with pytest.raises(NoteError, match="already has a signature"):
        add_signatures(note, [other])


def test_signing_requires_valid_text_and_signers(signer: Ed25519Signer) -> None:
    for text in ["no newline", "", "tab\there\n", "cr\r\n", "\ud800\n"]:
        with pytest.raises(NoteError):
            sign_note(text, [signer])
    with pytest.raises(NoteError):
        sign_note(TEXT, [])
    with pytest.raises(NoteError):
        sign_note(TEXT, [signer, signer])


def test_ambiguous_verifiers_are_rejected(signer: Ed25519Signer) -> None:
    note = sign_note(TEXT, [signer])
    with pytest.raises(NoteError, match="share the key"):
        verify_note(note, [signer.verifier(), signer.verifier()])


def _malformed(signed: str) -> list[str]:
    text, sig = signed.split("\n\n— ")
    sig_line = "— " + sig
    b64 = sig_line.split(" ")[2].rstrip("\n")
    return [
        text + "\n" + sig_line,  # no blank line
        text + "\n\n",  # no signatures
        signed + "\n",  # trailing blank line
        signed.rstrip("\n"),  # signature block without final newline
        text + "\n\n" + sig_line.replace("— ", "-- ", 1),  # hyphens, not an em dash
        text + "\n\n" + sig_line.replace("— ", "—", 1),  # no space after the dash
        text + "\n\n" + sig_line.replace(" ", "  ", 1),  # double space
        text + "\n\n" + sig_line.replace(b64, b64 + " extra"),  # extra field
        text + "\n\n" + sig_line.replace(b64, "!!!!"),  # not base64
        text + "\n\n" + sig_line.replace(b64, b64.rstrip("=")),  # missing padding
        text + "\n\n" + "— " + NAME + " AAAAAA==\n",  # shorter than key ID + 1 byte
        text + "\n\n" + sig_line.replace(NAME, "bad+name"),  # '+' in name
        text + "\n\n" + sig_line.replace(NAME, "bad\u3000name"),  # Unicode space
        text + "\n\n" + sig_line.replace(NAME, ""),  # empty name
        "x\r\n\n" + sig_line,  # control character in text
        "x\n\n" + sig_line * 101,  # too many signatures
        "no separator at all\n",
        "\ud800\n\n" + sig_line,  # not UTF-8 encodable
    ]


def test_malformed_notes_are_rejected(signer: Ed25519Signer) -> None:
    signed = sign_note("origin\n1\n", [signer])
    for bad in _malformed(signed):
        with pytest.raises(NoteError):
            verify_note(bad, [signer.verifier()])


def test_non_string_note_is_rejected(signer: Ed25519Signer) -> None:
    with pytest.raises(NoteError):
        verify_note(b"bytes\n\n", [signer.verifier()])  # type: ignore[arg-type]


def test_non_canonical_base64_is_rejected(signer: Ed25519Signer) -> None:
    signed = sign_note("origin\n1\n", [signer])
    _text, sigs = parse_note(signed)
    raw = sigs[0].key_id.to_bytes(4, "big") + sigs[0].signature  # 68 bytes: 1 padding '='
    good = base64.b64encode(raw).decode()
    # Set a slack bit in the last base64 digit: decodes to the same bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = good[-2]
    slack = alphabet[alphabet.index(last) ^ 1]
    bad = good[:-2] + slack + "="
    assert base64.b64decode(bad) == raw
    with pytest.raises(NoteError, match="canonical"):
        verify_note(signed.replace(good, bad), [signer.verifier()])


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "name+deadbeef",
        "name+DEADBEEF+AQ==",
        "name+deadbee+AQ==",
        "bad name+deadbeef+AQ==",
        "name+deadbeef+!!",
        "name+deadbeef+AQ",
    ],
)
def test_malformed_vkeys_are_rejected(vkey: str) -> None:
    with pytest.raises(NoteError):
        parse_vkey(vkey)


def test_vkey_with_wrong_key_id_or_type_is_rejected(signer: Ed25519Signer) -> None:
    vkey = signer.verifier().vkey()
    name, hex_id, material = vkey.split("+", 2)
    wrong_id = f"{(int(hex_id, 16) ^ 1):08x}"
    with pytest.raises(NoteError, match="does not match"):
        Ed25519Verifier.from_vkey(f"{name}+{wrong_id}+{material}")
    public = signer.public_key
    cosig_id = hashlib.sha256(name.encode() + b"\n\x04" + public).digest()[:4].hex()
    type4_b64 = base64.b64encode(b"\x04" + public).decode()
    as_type4 = f"{name}+{cosig_id}+{type4_b64}"
    assert parse_vkey(as_type4).alg == 0x04
    with pytest.raises(NoteError, match="type 0x04"):
        Ed25519Verifier.from_vkey(as_type4)
    assert parse_vkey(vkey).alg == ALG_ED25519


@pytest.mark.parametrize(
    "skey",
    [
        "",
        "PRIVATE+KEY+name",
        "PRIVATE+KEY+name+deadbeef+AQ==",
        "private+key+name+deadbeef+" + base64.b64encode(b"\x01" + SEED).decode(),
        "PRIVATE+KEY+name+deadbeef+" + base64.b64encode(b"\x01" + SEED).decode(),  # wrong ID
        "PRIVATE+KEY+name+deadbeef+" + base64.b64encode(b"\x04" + SEED).decode(),  # wrong type
    ],
)
def test_malformed_skeys_are_rejected(skey: str) -> None:
    with pytest.raises(NoteError):
        Ed25519Signer.from_skey(skey)


def test_skey_round_trip_and_repr_hides_seed() -> None:
    key = Ed25519Signer.generate("gen.example/k")
    assert Ed25519Signer.from_skey(key.skey()).key_id == key.key_id
    assert "PRIVATE" not in repr(key)
    seed_b64 = key.skey().rsplit("+", 1)[1]
    assert seed_b64 not in repr(key)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\tname", "a\u00a0b", "x\n"])
def test_invalid_key_names_are_rejected(name: str) -> None:
    with pytest.raises(NoteError):
        Ed25519Signer.from_seed(name, SEED)


def test_invalid_key_material_is_rejected() -> None:
    with pytest.raises(NoteError):
        Ed25519Signer.from_seed(NAME, b"short")
    with pytest.raises(NoteError):
        Ed25519Verifier(NAME, b"short")
