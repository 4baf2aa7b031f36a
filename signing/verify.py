"""One verification entry point for licences: a JWS or a signed PDF.

:func:`verify_document` detects the kind by content (``%PDF-`` header, or
three base64url segments) and checks, in order, stopping at the first
failure:

* **JWS** — :class:`signing.jws.JwsVerifier` (alg allow-list, signature,
  canonical payload and ``iat``, chain at ``iat``, revocation, seal).
* **PDF** — exactly one signature; pyHanko validates the CMS (the document
  digest over ``/ByteRange``, the signature with the signer's key) and the
  path to the bundle's roots at the signing time (``/M``); the signature must
  cover the whole file (otherwise DOCUMENT_MODIFIED: bytes were added, e.g. an
  incremental update); then zhida's own :class:`signing.trust.ChainVerifier`
  (chain at the signing time with cryptography's verifier, key usage and EKU,
  CRLs — fail closed), the department identity, and the seal named in the
  catalog's ``/ZhidaSeal``: known, signer bound to it, valid at the signing
  time, not revoked.

The answer is a :class:`VerificationResult`: valid, or invalid with one
:class:`signing.errors.Failure` and a precise human message. Nothing raises
for bad input.

Example::

    bundle = VerifierBundle.from_json(Path("trust.json").read_text())
    result = verify_document(Path("licence.pdf").read_bytes(), bundle.trust, bundle.registry())
    print(result.summary())          # "valid: 营业执照 … signed by … under seal …"
    if not result.valid:
        print(result.failure, result.message)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from signing.errors import Failure, VerificationError
from signing.jws import verify_jws
from signing.pki import DepartmentIdentity, cert_sha256, department_identity
from signing.seal import Seal, SealRegistry, SealRevocations
from signing.trust import ChainVerifier, TrustBundle
from zhida.errors import ZhidaError

__all__ = ["DocumentKind", "VerificationResult", "detect_kind", "verify_document"]

DocumentKind = Literal["jws", "pdf", "unknown"]
MAX_DOCUMENT_BYTES = 32 << 20
_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class VerificationResult:
    """The verdict on one document. ``failure`` is None exactly when ``valid``."""

    valid: bool
    kind: DocumentKind
    failure: Failure | None = None
    message: str = ""
    department: DepartmentIdentity | None = None
    seal: Seal | None = None
    signed_at: datetime | None = None
    payload: dict[str, Any] | None = None
    """The licence data of a JWS; None for PDFs."""
    chain: tuple[x509.Certificate, ...] = field(default=(), repr=False)

    @property
    def reason(self) -> str:
        """The stable reason code: ``VALID`` or a :class:`Failure` value."""
        return "VALID" if self.failure is None else self.failure.value

    def summary(self) -> str:
        """One line for people: ``valid: …`` or ``invalid: <reason>: <message>``."""
        if not self.valid:
            return f"invalid: {self.reason}: {self.message}"
        assert self.department is not None
        assert self.seal is not None
        assert self.signed_at is not None
        return (
            f"valid: {self.kind.upper()} signed by {self.department.name} "
            f"({self.department.uscc}) under seal {self.seal.name} [{self.seal.seal_id}] "
            f"at {self.signed_at.isoformat()}"
        )

    def raise_if_invalid(self) -> None:
        """Raise the :class:`VerificationError` this result describes, if any."""
        if self.failure is not None:
            raise VerificationError(self.failure, self.message)


def detect_kind(data: bytes) -> DocumentKind:
    """``pdf`` for a ``%PDF-`` header in the first KiB, ``jws`` for a compact JWS."""
    if b"%PDF-" in data[:1024]:
        return "pdf"
    text = data.strip()
    if (
        text.count(b".") == 2
        and text.replace(b".", b"").replace(b"-", b"").replace(b"_", b"").isalnum()
    ):
        return "jws"
    return "unknown"


def verify_document(
    data: bytes,
    trust: TrustBundle,
    seals: SealRegistry,
    revocations: SealRevocations | None = None,
    now: datetime | None = None,
) -> VerificationResult:
    """Verify a licence JWS or signed licence PDF (see the module docstring).

    ``revocations`` adds seal revocations to those of ``seals``; ``now``
    (default: the clock) judges CRL freshness and refuses future signing times.
    """
    now = now or datetime.now(UTC)
    kind = detect_kind(data) if len(data) <= MAX_DOCUMENT_BYTES else "unknown"
    try:
        if kind == "pdf":
            return _verify_pdf(data, trust, seals, revocations, now)
        if kind == "jws":
            verified = verify_jws(data.strip().decode("ascii"), trust, seals, now=now)
            _check_extra_revocations(verified.seal, revocations)
            return VerificationResult(
                valid=True,
                kind="jws",
                department=verified.department,
                seal=verified.seal,
                signed_at=verified.signed_at,
                payload=verified.payload,
                chain=verified.chain,
            )
        raise VerificationError(
            Failure.MALFORMED, "neither a PDF nor a compact JWS (or larger than 32 MiB)"
        )
    except VerificationError as exc:
        return VerificationResult(valid=False, kind=kind, failure=exc.failure, message=exc.message)


def _check_extra_revocations(seal: Seal, revocations: SealRevocations | None) -> None:
    if revocations is not None and (hit := revocations.get(seal.seal_id)) is not None:
        raise VerificationError(
            Failure.SEAL_REVOKED,
            f"seal {seal.seal_id} was revoked at {hit[0].isoformat()}: {hit[1]}",
        )


# -- PDF ------------------------------------------------------------------------------

_CHAINS: dict[int, tuple[TrustBundle, ChainVerifier]] = {}
_CHAINS_LOCK = threading.Lock()


def _chain_verifier(trust: TrustBundle) -> ChainVerifier:
    with _CHAINS_LOCK:
        entry = _CHAINS.get(id(trust))
        if entry is None or entry[0] is not trust:
            if len(_CHAINS) > 16:
                _CHAINS.clear()
            entry = (trust, ChainVerifier(trust))
            _CHAINS[id(trust)] = entry
        return entry[1]


def _verify_pdf(
    data: bytes,
    trust: TrustBundle,
    seals: SealRegistry,
    revocations: SealRevocations | None,
    now: datetime,
) -> VerificationResult:
    # pyHanko is imported here: JWS-only verifiers never pay for it
    from signing import pdf_check

    checked = pdf_check.check_pdf_signature(data, trust, now=now, skew=_SKEW)
    leaf = checked.signer
    chain = _chain_verifier(trust).verify(leaf, checked.other_certs, at=checked.signed_at, now=now)
    try:
        department = department_identity(leaf)
    except ZhidaError:
        raise VerificationError(
            Failure.CHAIN_INVALID, "the signer certificate names no department USCC"
        ) from None
    chain_ders = {c.public_bytes(Encoding.DER) for c in chain.certificates}
    if not checked.embedded_ders <= chain_ders:  # the CMS certificate set is unsigned
        raise VerificationError(
            Failure.DOCUMENT_MODIFIED,
            "the signature container carries a certificate outside the signer's chain "
            "(changed after signing?)",
        )
    if checked.trust_problem is not None:  # ours accepted the path, pyHanko did not
        raise VerificationError(Failure.CHAIN_INVALID, checked.trust_problem)
    if checked.seal_id is None:
        raise VerificationError(Failure.SEAL_UNKNOWN, "the PDF names no seal (/ZhidaSeal)")
    seal = seals.check(checked.seal_id, at=checked.signed_at, signer_hash=cert_sha256(leaf))
    _check_extra_revocations(seal, revocations)
    return VerificationResult(
        valid=True,
        kind="pdf",
        department=department,
        seal=seal,
        signed_at=checked.signed_at,
        chain=chain.certificates,
    )
