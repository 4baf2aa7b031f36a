"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys.

A signed note is a UTF-8 text ending in a newline, a blank line, then one or
more lines ``— <key name> base64(key ID || signature)``. A key is identified
by (name, key ID); key ID = SHA-256(name || 0x0A || type || public key)[:4].
Verifiers ignore signatures from unknown keys, reject the note if a known key's
signature fails, and require at least one known valid signature.

Keys travel as strings: verifier keys ``<name>+<hex key ID>+base64(type || public key)``
and signer keys ``PRIVATE+KEY+<name>+<hex key ID>+base64(type || seed)``.

Example::

    >>> signer = Ed25519Signer.from_seed("log.example/zhida", bytes(32))
    >>> signed = sign_note("hello\\n", [signer])
    >>> signed.splitlines()[2].startswith("— log.example/zhida ")
    True
    >>> verifier = Ed25519Verifier.from_vkey(signer.verifier().vkey())
    >>> verify_note(signed, [verifier]).text
    'hello\\n'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit_log.errors import NoteError

ALG_ED25519 = 0x01  # signed-note §Signature types
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
# The spec requires accepting at least 16 signatures and recommends a cap.
MAX_SIGNATURES = 100
MAX_NOTE_BYTES = 1 << 20
_SKEY_PREFIX = "PRIVATE+KEY+"
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # ASCII controls except newline


def key_id(name: str, alg: int, public_key: bytes) -> int:
    """SHA-256(name || 0x0A || alg || public key)[:4] as a big-endian uint32."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def check_key_name(name: object) -> str:
    """Key names are non-empty, without Unicode spaces or '+' (signed-note §Format)."""
    if not isinstance(name, str) or not name:
        raise NoteError("key name must be a non-empty string")
    if "+" in name or any(c.isspace() for c in name) or _CONTROL.search(name):
        raise NoteError(f"key name {name!r} contains a space, '+' or control character")
    return name


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise NoteError(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode() != text:  # one encoding per value, no slack bits
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class NoteSigner(Protocol):
    """Anything that can add a signature line to a note."""

    @property
    def name(self) -> str: ...
    @property
    def key_id(self) -> int: ...
    def sign(self, text: bytes, /) -> bytes: ...


class NoteVerifier(Protocol):
    """A trusted key: checks signatures carrying its (name, key ID)."""

    @property
    def name(self) -> str: ...
    @property
    def key_id(self) -> int: ...
    def verify(self, text: bytes, signature: bytes, /) -> bool: ...


class VerifierKey(NamedTuple):
    """A parsed verifier key string (the key ID is already checked)."""

    name: str
    key_id: int
    alg: int
    public_key: bytes


def format_vkey(name: str, alg: int, public_key: bytes) -> str:
    check_key_name(name)
    return f"{name}+{key_id(name, alg, public_key):08x}+{_b64(bytes([alg]) + public_key)}"


def parse_vkey(vkey: str) -> VerifierKey:
    """Parse ``<name>+<hex key ID>+base64(type || key)`` and check the key ID."""
    if not isinstance(vkey, str):
        raise NoteError("verifier key must be a string")
    parts = vkey.split("+", 2)  # base64 may hold "+"
    if len(parts) != 3:
        raise NoteError("verifier key must have the form name+keyid+key")
    name, hex_id, material = parts
    check_key_name(name)
    if not _HEX_KEY_ID.fullmatch(hex_id):
        raise NoteError("verifier key ID must be 8 lowercase hex digits")
    raw = _b64decode(material, "verifier key")
    if len(raw) < 2:
        raise NoteError("verifier key has no key material")
    alg, public_key = raw[0], raw[1:]
    if key_id(name, alg, public_key) != int(hex_id, 16):
        raise NoteError(f"verifier key ID {hex_id} does not match the key")
    return VerifierKey(name, int(hex_id, 16), alg, public_key)


class Ed25519SigningKey:
    """An Ed25519 private key with a note key name; subclasses pick the type byte."""

    ALGORITHM: ClassVar[int] = ALG_ED25519
    __slots__ = ("_key", "_key_id", "_name", "_public")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._name = check_key_name(name)
        self._key = private_key
        self._public = private_key.public_key().public_bytes_raw()
        self._key_id = key_id(name, self.ALGORITHM, self._public)

    @classmethod
    def generate(cls, name: str) -> Self:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Self:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise NoteError("an Ed25519 seed is 32 bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_skey(cls, skey: str) -> Self:
        """Parse ``PRIVATE+KEY+<name>+<hex key ID>+base64(type || seed)``."""
        if not isinstance(skey, str) or not skey.startswith(_SKEY_PREFIX):
            raise NoteError("signer key must start with PRIVATE+KEY+")
        parts = skey[len(_SKEY_PREFIX) :].split("+", 2)  # base64 may hold "+"
        if len(parts) != 3 or not _HEX_KEY_ID.fullmatch(parts[1]):
            raise NoteError("signer key must have the form PRIVATE+KEY+name+keyid+key")
        raw = _b64decode(parts[2], "signer key")
        if len(raw) != 33 or raw[0] != cls.ALGORITHM:
            raise NoteError(f"signer key is not a type 0x{cls.ALGORITHM:02x} Ed25519 seed")
        signer = cls.from_seed(parts[0], raw[1:])
        if signer.key_id != int(parts[1], 16):
            raise NoteError(f"signer key ID {parts[1]} does not match the key")
        return signer

    def skey(self) -> str:
        """The secret key string; handle like the key itself."""
        seed = self._key.private_bytes_raw()
        return (
            f"{_SKEY_PREFIX}{self._name}+{self._key_id:08x}+{_b64(bytes([self.ALGORITHM]) + seed)}"
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

    @property
    def public_key(self) -> bytes:
        return self._public

    def _sign_raw(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:  # never the seed
        return f"{type(self).__name__}({self._name!r}, key_id={self._key_id:08x})"


class Ed25519VerifyingKey:
    """An Ed25519 public key with a note key name; subclasses pick the type byte."""

    ALGORITHM: ClassVar[int] = ALG_ED25519
    __slots__ = ("_key", "_key_id", "_name", "_public")

    def __init__(self, name: str, public_key: bytes) -> None:
        self._name = check_key_name(name)
        if not isinstance(public_key, bytes) or len(public_key) != 32:
            raise NoteError("an Ed25519 public key is 32 bytes")
        try:
            self._key = Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError:
            raise NoteError("invalid Ed25519 public key") from None
        self._public = public_key
        self._key_id = key_id(name, self.ALGORITHM, public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Self:
        parsed = parse_vkey(vkey)
        if parsed.alg != cls.ALGORITHM:
            raise NoteError(
                f"verifier key has type 0x{parsed.alg:02x}, expected 0x{cls.ALGORITHM:02x}"
            )
        return cls(parsed.name, parsed.public_key)

    def vkey(self) -> str:
        return format_vkey(self._name, self.ALGORITHM, self._public)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

    @property
    def public_key(self) -> bytes:
        return self._public

    def _verify_raw(self, message: bytes, signature: bytes) -> bool:
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.vkey()!r})"


class Ed25519Signer(Ed25519SigningKey):
    """Plain note signatures, type 0x01: Ed25519 over the note text."""

    def sign(self, text: bytes, /) -> bytes:
        return self._sign_raw(text)

    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier(self.name, self.public_key)


class Ed25519Verifier(Ed25519VerifyingKey):
    """Checks type 0x01 signatures: Ed25519 over the note text."""

    def verify(self, text: bytes, signature: bytes, /) -> bool:
        return len(signature) == 64 and self._verify_raw(text, signature)


class NoteSignature(NamedTuple):
    """One signature line; ``signature`` excludes the 4-byte key ID."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        raw = self.key_id.to_bytes(4, "big") + self.signature
        return f"{SIGNATURE_PREFIX}{self.name} {_b64(raw)}\n"


class VerifiedSignature(NamedTuple):
    verifier: NoteVerifier
    signature: NoteSignature


@dataclass(frozen=True, slots=True)
class VerifiedNote:
    """The text of a note whose signatures checked out.

    ``verified`` holds one entry per known key with a valid signature;
    ``unknown`` the signatures of keys the caller did not configure.
    """

    text: str
    verified: tuple[VerifiedSignature, ...]
    unknown: tuple[NoteSignature, ...]

    @property
    def verifiers(self) -> tuple[NoteVerifier, ...]:
        return tuple(v.verifier for v in self.verified)


def check_text(text: object) -> str:
    """Note text: valid UTF-8, ends in a newline, no control characters but newline."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise NoteError("note text must be a string ending in a newline")
    if _CONTROL.search(text):
        raise NoteError("note text contains an ASCII control character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError("note text is not valid UTF-8") from None
    return text


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError("signature line does not start with an em dash and a space")
    parts = line[len(SIGNATURE_PREFIX) :].split(" ")
    if len(parts) != 2:
        raise NoteError("signature line must be '— <name> <base64>'")
    name = check_key_name(parts[0])
    raw = _b64decode(parts[1], f"signature of {name}")
    if len(raw) < 5:
        raise NoteError(f"signature of {name} is too short")
    return NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def parse_note(note: str) -> tuple[str, tuple[NoteSignature, ...]]:
    """Split a signed note into text and signatures, checking syntax only."""
    if not isinstance(note, str):
        raise NoteError("note must be a string")
    if len(note) > MAX_NOTE_BYTES:
        raise NoteError("note is too large")
    try:
        size = len(note.encode("utf-8"))
    except UnicodeEncodeError:
        raise NoteError("note is not valid UTF-8") from None
    if size > MAX_NOTE_BYTES:
        raise NoteError("note is too large")
    if _CONTROL.search(note):
        raise NoteError("note contains an ASCII control character")
    # The text may contain blank lines; the last blank line separates it.
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("no blank line separates the text from the signatures")
    text, block = check_text(note[: split + 1]), note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("the signature block must be non-empty and end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
    return text, tuple(_parse_signature_line(line) for line in lines)


def _signature_lines(
    text: str, signers: Sequence[NoteSigner], existing: set[tuple[str, int]]
) -> str:
    message = text.encode("utf-8")
    lines = []
    for signer in signers:
        ident = (check_key_name(signer.name), signer.key_id)
        if ident in existing:
            raise NoteError(f"note already has a signature from {signer.name}+{signer.key_id:08x}")
        existing.add(ident)
        lines.append(NoteSignature(signer.name, signer.key_id, signer.sign(message)).line())
    if len(existing) > MAX_SIGNATURES:
        raise NoteError(f"a note carries at most {MAX_SIGNATURES} signatures")
    return "".join(lines)


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """Sign ``text`` with every signer; returns the signed note."""
    check_text(text)
    if not signers:
        raise NoteError("at least one signer is required")
    return f"{text}\n{_signature_lines(text, signers, set())}"


def add_signatures(note: str, signers: Sequence[NoteSigner]) -> str:
    """Append signatures to an already signed note (e.g. witness cosignatures).

    Existing signatures are kept as they are and not verified here.
    """
    text, signatures = parse_note(note)
    existing = {(s.name, s.key_id) for s in signatures}
    lines = "".join(s.line() for s in signatures)
    return f"{text}\n{lines}{_signature_lines(text, signers, existing)}"


def verify_note(note: str, verifiers: Sequence[NoteVerifier]) -> VerifiedNote:
    """Verify ``note`` against trusted keys (signed-note §Signatures).

    Unknown (name, key ID) pairs are ignored; a failed signature from a known
    key rejects the whole note; at least one known key must have signed.
    """
    text, signatures = parse_note(note)
    known: dict[tuple[str, int], NoteVerifier] = {}
    for v in verifiers:
        ident = (v.name, v.key_id)
        if ident in known:
            raise NoteError(f"two verifiers share the key {v.name}+{v.key_id:08x}")
        known[ident] = v
    message = text.encode("utf-8")
    verified: dict[tuple[str, int], VerifiedSignature] = {}
    unknown = []
    for sig in signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            unknown.append(sig)
            continue
        if not verifier.verify(message, sig.signature):
            raise NoteError(f"signature from known key {sig.name}+{sig.key_id:08x} is invalid")
        verified.setdefault((sig.name, sig.key_id), VerifiedSignature(verifier, sig))
    if not verified:
        raise NoteError("note has no signature from a known key")
    return VerifiedNote(text, tuple(verified.values()), tuple(unknown))
