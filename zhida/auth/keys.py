"""Development signing keys and the public JWKS the node verifies tokens against.

The node only ever needs the issuer's *public* keys, as a JWKS file
(``auth.jwks_file``). In production the issuer (the provincial identity
platform, say) keeps its private keys in its own HSM or key store and hands
the node nothing but that JWKS; set ``auth.dev_keys = false`` there.

For development (``auth.dev_keys = true``, the default) :func:`ensure_dev_keys`
creates one ES256 (P-256) and one EdDSA (Ed25519) key on first run: private
keys as PKCS#8 PEM ``jwt-<kid>.pem`` (mode 0600) under ``Config.keys_dir``
(mode 0700), public keys in the JWKS. Key ids are RFC 7638 thumbprints.
:func:`rotate_dev_key` appends a new key; older keys stay in the JWKS so
tokens they signed keep verifying, and the newest key signs new tokens.

Example::

    from zhida.auth.keys import ensure_dev_keys, load_signing_key, rotate_dev_key
    from zhida.config import load_config

    cfg = load_config(None)
    ensure_dev_keys(cfg)                       # no-op once the JWKS exists
    kid = rotate_dev_key(cfg, "EdDSA")         # new key, old ones kept
    assert load_signing_key(cfg).kid == kid    # newest key signs
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from zhida.config import SUPPORTED_JWT_ALGORITHMS, Config
from zhida.errors import ConfigError, FailedPrecondition, FieldViolation, InvalidArgument
from zhida.files import atomic_write

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

# The JWK key type and curve each supported algorithm requires (RFC 7518, RFC 8037).
ALG_KEY_TYPES: Mapping[str, tuple[str, str]] = {
    "ES256": ("EC", "P-256"),
    "EdDSA": ("OKP", "Ed25519"),
}
# A kid becomes part of a file name, so only base64url characters are accepted.
KID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
# RFC 7638: the required members of each key type, the only ones hashed.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
# Order of first-run keys: the last one is the newest and signs by default;
# ES256 is the one every client library can verify.
_FIRST_RUN_ALGORITHMS = ("EdDSA", "ES256")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A development private key and the JWKS entry that publishes it."""

    kid: str
    alg: str
    private_key: PrivateKey


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JOSE uses everywhere."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK, base64url."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ValueError(f"no thumbprint rule for key type {jwk.get('kty')!r}")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def jwk_algorithm(jwk: Mapping[str, Any]) -> str | None:
    """The algorithm a JWK is for, or None when zhida does not support its key type.

    Derived from ``kty``/``crv`` rather than trusted from ``alg``: a key whose
    declared ``alg`` disagrees with its type raises ValueError.
    """
    kty, crv = jwk.get("kty"), jwk.get("crv")
    for alg, (want_kty, want_crv) in ALG_KEY_TYPES.items():
        if kty == want_kty and crv == want_crv:
            declared = jwk.get("alg", alg)
            if declared != alg:
                raise ValueError(f"declares alg {declared!r} but is a {kty} {crv} key")
            return alg
    return None


def public_jwk(public_key: PublicKey, alg: str) -> dict[str, str]:
    """The public JWKS entry for ``public_key`` (kid = its thumbprint)."""
    jwk: dict[str, str]
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if alg != "ES256" or public_key.curve.name != "secp256r1":
            raise ValueError("ES256 needs a P-256 key")
        numbers = public_key.public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }
    else:
        if alg != "EdDSA":
            raise ValueError("an Ed25519 key signs EdDSA only")
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    return {**jwk, "kid": jwk_thumbprint(jwk), "alg": alg, "use": "sig"}


def generate_private_key(alg: str) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise InvalidArgument(
        f"unsupported signing algorithm {alg!r}",
        reason="UNSUPPORTED_ALGORITHM",
        violations=[FieldViolation("alg", f"must be one of {list(SUPPORTED_JWT_ALGORITHMS)}")],
    )


def read_jwks(path: Path) -> list[dict[str, Any]]:
    """The ``keys`` of the JWKS at ``path``; ConfigError when unreadable or not a JWKS."""
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError("auth.jwks_file", f"{path} does not exist") from None
    except OSError as exc:
        raise ConfigError("auth.jwks_file", f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ConfigError("auth.jwks_file", f"{path} is not valid JSON: {exc}") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
        raise ConfigError("auth.jwks_file", f'{path} is not a JWKS: need {{"keys": [...]}}')
    return keys


def private_key_path(config: Config, kid: str) -> Path:
    if not KID_PATTERN.fullmatch(kid):
        raise ValueError("kid is not base64url")  # never build a path from anything else
    return config.keys_dir / f"jwt-{kid}.pem"


def ensure_dev_keys(config: Config) -> None:
    """Make sure the JWKS exists, creating development keys if allowed.

    Production issuers keep their private keys elsewhere and give the node only
    the public JWKS; with ``auth.dev_keys = false`` a missing JWKS is a
    ConfigError. Safe when several processes start at once: creation happens
    under a file lock and an existing JWKS is never overwritten.
    """
    jwks = config.auth.jwks_file
    if jwks.exists():
        return
    if not config.auth.dev_keys:
        raise ConfigError(
            "auth.jwks_file",
            f"{jwks} does not exist; with auth.dev_keys = false the issuer's public JWKS "
            "must be provided",
        )
    _make_private_dir(config.keys_dir)
    jwks.parent.mkdir(parents=True, exist_ok=True)
    with _locked(jwks):
        if jwks.exists():  # another process won the race
            return
        _write_jwks(jwks, [_new_dev_key(config, alg) for alg in _FIRST_RUN_ALGORITHMS])


def rotate_dev_key(config: Config, alg: str = "ES256") -> str:
    """Add a new development key to the JWKS and return its kid.

    Older keys stay published so tokens they signed verify until they expire;
    the new key signs from now on. A running node picks the change up within
    about a second, without a restart.
    """
    if alg not in SUPPORTED_JWT_ALGORITHMS:
        generate_private_key(alg)  # raises the InvalidArgument
    if alg not in config.auth.algorithms:
        raise InvalidArgument(
            f"auth.algorithms does not allow {alg}; the node would not accept its tokens",
            reason="UNSUPPORTED_ALGORITHM",
            violations=[FieldViolation("alg", f"must be one of {list(config.auth.algorithms)}")],
        )
    if not config.auth.dev_keys:
        raise FailedPrecondition(
            "rotate-key manages development keys only (auth.dev_keys = false); "
            "rotate production keys at the issuer and publish its new JWKS",
            reason="DEV_KEYS_DISABLED",
        )
    ensure_dev_keys(config)
    jwks = config.auth.jwks_file
    with _locked(jwks):  # read-modify-write: a concurrent rotation must not be lost
        keys = read_jwks(jwks)
        entry = _new_dev_key(config, alg)
        _write_jwks(jwks, [*keys, entry])
    return entry["kid"]


def load_signing_key(config: Config, kid: str | None = None) -> SigningKey:
    """The development key with ``kid``, or the newest one the node accepts.

    Raises InvalidArgument for an unknown kid and FailedPrecondition when no
    published key has its private half in ``keys_dir`` (a production JWKS).
    """
    entries = read_jwks(config.auth.jwks_file)
    if kid is not None:
        chosen = [e for e in entries if e.get("kid") == kid]
        if not chosen:
            raise InvalidArgument(
                "no key with that kid in the JWKS",
                reason="UNKNOWN_KEY",
                violations=[FieldViolation("kid", f"{config.auth.jwks_file} has no such key")],
            )
    else:
        chosen = entries
    for entry in reversed(chosen):  # the JWKS lists keys oldest first
        key = _private_half(config, entry)
        if key is not None:
            return key
    raise FailedPrecondition(
        f"no development signing key in {config.keys_dir} for "
        + (f"kid {kid}" if kid else f"any key in {config.auth.jwks_file}")
        + f" with an algorithm in auth.algorithms {list(config.auth.algorithms)}",
        reason="NO_SIGNING_KEY",
    )


@dataclass(frozen=True, slots=True)
class VerificationKey:
    kid: str
    alg: str
    jwk: jwt.PyJWK  # bound to ``alg``: PyJWT refuses any other algorithm with it


def load_verification_keys(path: Path, algorithms: Iterable[str]) -> dict[str, VerificationKey]:
    """Parse the JWKS at ``path`` into usable keys by kid; ConfigError when unusable.

    Keys of other types or algorithms, or not for signatures, are skipped (an
    issuer's JWKS may carry them); a malformed ES256/EdDSA key is an error.
    """
    allowed = frozenset(algorithms)
    keys: dict[str, VerificationKey] = {}
    for entry in read_jwks(path):
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise ConfigError("auth.jwks_file", f"{path}: every key needs a string kid")
        if "d" in entry:
            raise ConfigError(
                "auth.jwks_file",
                f"{path}: key {kid} holds private key material; publish public keys only",
            )
        if entry.get("use", "sig") != "sig":
            continue
        try:
            alg = jwk_algorithm(entry)
        except ValueError as exc:
            raise ConfigError("auth.jwks_file", f"{path}: key {kid} {exc}") from None
        if alg is None or alg not in allowed:
            continue
        if kid in keys:
            raise ConfigError("auth.jwks_file", f"{path}: kid {kid} appears twice")
        try:
            keys[kid] = VerificationKey(kid, alg, jwt.PyJWK(entry, algorithm=alg))
        except jwt.PyJWTError as exc:
            raise ConfigError("auth.jwks_file", f"{path}: key {kid} is invalid: {exc}") from None
    if not keys:
        raise ConfigError(
            "auth.jwks_file", f"{path} has no signing key for auth.algorithms {sorted(allowed)}"
        )
    return keys


# --- internals ---------------------------------------------------------------


def _private_half(config: Config, entry: Mapping[str, Any]) -> SigningKey | None:
    kid = entry.get("kid")
    try:
        alg = jwk_algorithm(entry)
    except ValueError:
        return None
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
        return None
    if alg is None or alg not in config.auth.algorithms:
        return None
    path = private_key_path(config, kid)
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError("node.data_dir", f"cannot read {path}: {exc.strerror}") from None
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except ValueError:
        raise ConfigError("node.data_dir", f"{path} is not a PEM private key") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ConfigError("node.data_dir", f"{path} holds an unsupported key type")
    # Refuse a PEM that does not match its JWKS entry: tokens would never verify.
    try:
        matches = public_jwk(private.public_key(), alg)["kid"] == jwk_thumbprint(entry)
    except (KeyError, ValueError):
        matches = False
    if not matches:
        raise ConfigError("node.data_dir", f"{path} does not match key {kid} in the JWKS")
    return SigningKey(kid=kid, alg=alg, private_key=private)


def _new_dev_key(config: Config, alg: str) -> dict[str, str]:
    """Generate a key, store its private half, return its public JWKS entry."""
    private = generate_private_key(alg)
    entry = public_jwk(private.public_key(), alg)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: never overwrite a key file; the private half is written before the
    # JWKS names its kid, so a published kid always has a complete PEM.
    fd = os.open(
        private_key_path(config, entry["kid"]), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
    )
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return entry


def _write_jwks(path: Path, keys: list[dict[str, Any]]) -> None:
    data = (json.dumps({"keys": keys}, indent=2) + "\n").encode("utf-8")
    # Readers (a node reloading the JWKS) see the old or the new file, never half
    # of one; public keys: anyone may read them.
    atomic_write(path, data, mode=0o644)


def _make_private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is masked by the umask; be explicit
    except OSError as exc:
        raise ConfigError("node.data_dir", f"cannot create {path}: {exc.strerror}") from None


@contextlib.contextmanager
def _locked(jwks: Path) -> Iterator[None]:
    """Exclusive inter-process lock guarding creation and rotation of ``jwks``."""
    fd = os.open(jwks.with_name(f".{jwks.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
