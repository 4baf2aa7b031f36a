"""Typed errors of the signing package.

Every failed verification — of a JWS licence, a certificate chain, a seal —
raises the one opaque :class:`VerificationError`, the way pyca/cryptography
raises ``InvalidSignature``: callers need one ``except`` and can never mistake a
half-checked token for a valid one. Its ``reason`` (inherited from
:class:`zhida.errors.ZhidaError`) is a stable code from :class:`Failure`
(``BAD_SIGNATURE``, ``CERT_REVOKED``, …) and its ``message`` says precisely what
was wrong, for humans and logs.

Example::

    from signing.errors import Failure, VerificationError

    try:
        licence = verify_jws(token, trust, seals)
    except VerificationError as exc:
        if exc.failure is Failure.CERT_REVOKED:
            ...
        log.warning("licence refused: %s (%s)", exc.message, exc.reason)
"""

from __future__ import annotations

import enum

from zhida.errors import ErrorCode, ZhidaError


class SigningError(ZhidaError):
    """Base class of every error raised on purpose by ``signing``."""

    code = ErrorCode.FAILED_PRECONDITION
    default_reason = "SIGNING_ERROR"


class Failure(enum.StrEnum):
    """Why a verification failed; the values are the stable ``reason`` strings."""

    MALFORMED = "MALFORMED"
    """Not parseable: bad base64url, bad JSON, missing or ill-typed fields."""
    ALG_NOT_ALLOWED = "ALG_NOT_ALLOWED"
    """``alg`` outside the allow-list, or not matching the signer's key type."""
    BAD_SIGNATURE = "BAD_SIGNATURE"
    """The signature does not verify with the signer certificate's key (or the
    signed bytes of a PDF no longer match their digest)."""
    DOCUMENT_MODIFIED = "DOCUMENT_MODIFIED"
    """A PDF has bytes the signature does not cover, e.g. an incremental update."""
    SIGNING_TIME_INVALID = "SIGNING_TIME_INVALID"
    """The claimed signing time is missing or lies in the future."""
    CHAIN_INVALID = "CHAIN_INVALID"
    """No path to a trusted root (wrong root, path length, key usage, …)."""
    CERT_EXPIRED = "CERT_EXPIRED"
    """A chain certificate was not valid at the signing time."""
    CERT_REVOKED = "CERT_REVOKED"
    """A chain certificate is on its issuer's CRL."""
    REVOCATION_UNAVAILABLE = "REVOCATION_UNAVAILABLE"
    """No current, correctly signed CRL for an issuing CA: fail closed."""
    SEAL_UNKNOWN = "SEAL_UNKNOWN"
    """The seal named in the signature is not known to the verifier."""
    SEAL_INVALID = "SEAL_INVALID"
    """The seal's own (seal-maker) signature does not verify."""
    SEAL_NOT_BOUND = "SEAL_NOT_BOUND"
    """The signer certificate is not in the seal's certificate list."""
    SEAL_EXPIRED = "SEAL_EXPIRED"
    """The seal was not valid at the signing time."""
    SEAL_REVOKED = "SEAL_REVOKED"
    """The seal is on the seal revocation list."""


class VerificationError(SigningError):
    """A signature, chain or seal did not verify. ``failure`` says which check."""

    code = ErrorCode.INVALID_ARGUMENT
    default_reason = "VERIFICATION_FAILED"

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message, reason=failure.value)
        self.failure = failure


class KeyStoreReason(enum.StrEnum):
    """Stable reasons of :class:`KeyStoreError`."""

    WRONG_PASSPHRASE = "WRONG_PASSPHRASE"  # noqa: S105 - a reason code, not a secret
    PASSPHRASE_MISSING = "PASSPHRASE_MISSING"  # noqa: S105
    UNENCRYPTED_KEY = "UNENCRYPTED_KEY"
    KEY_CORRUPT = "KEY_CORRUPT"
    KEY_RETIRED = "KEY_RETIRED"
    CA_SIGNING_UNSUPPORTED = "CA_SIGNING_UNSUPPORTED"


class KeyStoreError(SigningError):
    """The key store cannot produce or use a key (passphrase, file, state)."""

    default_reason = "KEY_STORE_ERROR"

    def __init__(self, reason: KeyStoreReason, message: str) -> None:
        super().__init__(message, reason=reason.value)
        self.key_store_reason = reason


class FontNotFound(SigningError):
    """No font with Chinese glyphs is installed, so no seal image can be drawn."""

    default_reason = "CJK_FONT_MISSING"
