"""The PDF half of verification: pyHanko checks the PAdES signature itself.

:func:`check_pdf_signature` parses the PDF, requires exactly one signature,
and has pyHanko validate it against the trust bundle (roots, intermediates,
CRLs; no network) at the signing time the signature dictionary reports:
integrity of the signed byte ranges, the signature value, coverage of the
whole file. It returns the signer certificate, the other embedded
certificates, the signing time and the seal id for :mod:`signing.verify`,
which runs zhida's own chain, revocation and seal checks. Any parse failure of
the (attacker-supplied) bytes is MALFORMED.

Example::

    checked = check_pdf_signature(pdf_bytes, trust, now=datetime.now(UTC))
    checked.signer, checked.signed_at, checked.seal_id
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from signing.algorithms import algorithm_for_key
from signing.errors import Failure, VerificationError
from signing.pdf import SEAL_ENTRY
from signing.trust import TrustBundle
from zhida.errors import InvalidArgument

__all__ = ["CheckedPdf", "check_pdf_signature"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CheckedPdf:
    """A PDF whose one signature is intact, valid and covers the whole file."""

    signer: x509.Certificate
    other_certs: tuple[x509.Certificate, ...]
    signed_at: datetime
    seal_id: str | None
    trust_problem: str | None
    """pyHanko's reason when it found no trusted path (zhida's verifier decides first)."""
    embedded_ders: frozenset[bytes]
    """DER of every certificate in the CMS: each must belong to the verified chain."""


def _fail(failure: Failure, message: str) -> VerificationError:
    return VerificationError(failure, message)


def _crypto(cert: asn1_x509.Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(cert.dump())


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def check_pdf_signature(
    data: bytes, trust: TrustBundle, *, now: datetime, skew: timedelta
) -> CheckedPdf:
    """Integrity, signature and coverage of the PDF's one signature; VerificationError if not."""
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        signatures = reader.embedded_signatures
        if len(signatures) != 1:
            raise _fail(Failure.MALFORMED, f"expected one signature, the PDF has {len(signatures)}")
        signature = signatures[0]
        signed_at = signature.self_reported_timestamp
        signer = _crypto(signature.signer_cert)
        others = tuple(_crypto(c) for c in signature.other_embedded_certs)
    except VerificationError:
        raise
    except Exception as exc:  # any parse failure of attacker-supplied bytes
        raise _fail(Failure.MALFORMED, f"not a readable signed PDF: {exc}") from None
    try:
        algorithm_for_key(signer.public_key())
    except (InvalidArgument, ValueError) as exc:
        raise _fail(Failure.ALG_NOT_ALLOWED, f"signer key not allowed: {exc}") from None
    if signed_at is None:
        raise _fail(Failure.SIGNING_TIME_INVALID, "the signature dictionary has no /M time")
    if signed_at > now + skew:
        raise _fail(
            Failure.SIGNING_TIME_INVALID, f"signing time {signed_at.isoformat()} lies in the future"
        )
    context = ValidationContext(
        trust_roots=[_asn1(c) for c in trust.roots],
        other_certs=[_asn1(c) for c in trust.intermediates],
        crls=[c.public_bytes(Encoding.DER) for c in trust.crls],
        moment=signed_at,
        allow_fetching=False,
        revocation_mode="soft-fail",  # CRLs are judged, fail closed, by ChainVerifier
    )
    try:
        status = validate_pdf_signature(signature, context, skip_diff=True)
    except Exception as exc:  # pyHanko raises assorted errors for broken CMS
        raise _fail(Failure.MALFORMED, f"the signature does not parse: {exc}") from None
    if not status.intact:
        raise _fail(
            Failure.BAD_SIGNATURE,
            "the signed bytes of the PDF changed: their digest no longer matches the signature",
        )
    if not status.valid:
        raise _fail(Failure.BAD_SIGNATURE, "the signature does not verify with the signer's key")
    if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
        raise _fail(
            Failure.DOCUMENT_MODIFIED,
            "the PDF was modified after signing: bytes outside the signed range "
            f"(coverage {status.coverage.name if status.coverage else 'unknown'}, "
            "e.g. an incremental update)",
        )
    try:
        _check_container(signature)
    except VerificationError:
        raise
    except Exception as exc:
        raise _fail(Failure.MALFORMED, f"unreadable signature container: {exc}") from None
    try:  # read only now: a changed byte in the entry is reported as a changed document
        seal_id = _seal_id(reader)
    except VerificationError:
        raise
    except Exception as exc:
        raise _fail(Failure.MALFORMED, f"unreadable {SEAL_ENTRY} entry: {exc}") from None
    problem = None
    if not status.trusted:
        indication = status.trust_problem_indic
        problem = f"pyHanko found no trusted path: {indication or 'unknown'}"
    embedded = frozenset(c.public_bytes(Encoding.DER) for c in (signer, *others))
    return CheckedPdf(signer, others, signed_at, seal_id, problem, embedded)


def _check_container(signature: Any) -> None:
    """Pin the parts of /Contents that neither /ByteRange nor the CMS signature cover.

    The CMS certificate set, its unsigned fields and the zero padding after it
    are not signed; a changed byte there must still be refused. Certificates
    are checked against the verified chain by :mod:`signing.verify`.
    """
    raw: bytes = signature.pkcs7_content
    info = cms.ContentInfo.load(raw)
    length = len(info.dump())
    signed_data = signature.signed_data
    problems = []
    if raw[length:].strip(b"\x00"):
        problems.append("bytes after the signature container")
    if info.dump(force=True) != raw[:length]:
        problems.append("the signature container is not DER")
    if len(signed_data["signer_infos"]) != 1:
        problems.append("more than one signer")
    if signed_data["encap_content_info"]["content"].native is not None:
        problems.append("encapsulated content in a detached signature")
    if signature.signer_info["unsigned_attrs"].native:
        problems.append("unsigned attributes (none are written)")
    if problems:
        raise _fail(
            Failure.DOCUMENT_MODIFIED,
            f"the signature container was modified after signing: {', '.join(problems)}",
        )


def _seal_id(reader: PdfFileReader) -> str | None:
    entry = reader.root.get(SEAL_ENTRY)
    if entry is None:
        return None
    entry = entry.get_object()
    if not isinstance(entry, generic.DictionaryObject):
        raise _fail(Failure.MALFORMED, f"{SEAL_ENTRY} is not a dictionary")
    value = entry.get("/SealId")
    if not isinstance(value, generic.TextStringObject | generic.ByteStringObject | str):
        raise _fail(Failure.MALFORMED, f"{SEAL_ENTRY} has no /SealId string")
    return str(value)
