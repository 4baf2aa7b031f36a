"""What a verifier trusts, offline: roots, intermediates and CRLs in one bundle.

A :class:`TrustBundle` is the file ``zhida pki export-trust`` will write: the
deployment's root certificates, its intermediate CAs and their current CRLs,
as PEM strings inside one JSON document. :class:`ChainVerifier` checks a
certificate chain against it:

* path building, signatures, validity at the signing time, BasicConstraints
  and path length, KeyUsage and the document-signing EKU are checked by
  ``cryptography.x509.verification`` (a client verifier with zhida's extension
  policy: no SAN needed, EKU id-kp-documentSigning and KeyUsage
  digitalSignature + nonRepudiation required on the leaf);
* revocation: every certificate below the root must have a current CRL from
  its issuer in the bundle (signature checked with the issuer's key, fail
  closed otherwise) and must not be on it. A certificate revoked as
  ``superseded``, ``cessationOfOperation`` or ``affiliationChanged`` after the
  signing time keeps its earlier signatures valid; any other revocation
  (key compromise, unspecified) refuses every signature.

Verified paths are cached, keyed by the presented certificates and reused
while the signing time lies in the window where every certificate of the
path is valid; revocation is checked on every call.

Example::

    bundle = TrustBundle(roots=(root.certificate,), intermediates=(hubei.certificate,),
                         crls=(create_crl(root, []), create_crl(hubei, [])))
    Path("trust.json").write_text(bundle.to_json())
    verifier = ChainVerifier(TrustBundle.from_json(Path("trust.json").read_text()))
    chain = verifier.verify(department_cert, at=signed_at)   # VerificationError if not
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import verification as xv

from signing.errors import Failure, VerificationError
from signing.pki import DOCUMENT_SIGNING
from zhida.errors import InvalidArgument

__all__ = ["ChainVerifier", "TrustBundle", "VerifiedChain", "crl_order"]

BUNDLE_FORMAT = "zhida-trust-bundle"
BUNDLE_VERSION = 1

# Revocations that do not mean the key was misused: signatures made before the
# revocation date stay valid.
_BENIGN_REASONS = frozenset(
    {
        x509.ReasonFlags.superseded,
        x509.ReasonFlags.cessation_of_operation,
        x509.ReasonFlags.affiliation_changed,
    }
)
_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, eq=False)
class TrustBundle:
    """Trust anchors and revocation data; immutable, serialisable to one JSON file."""

    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()

    def __post_init__(self) -> None:
        if not self.roots:
            raise InvalidArgument("a trust bundle needs at least one root", reason="NO_ROOTS")
        for cert in (*self.roots, *self.intermediates):
            try:
                is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                is_ca = False
            if not is_ca:
                raise InvalidArgument(
                    f"{cert.subject.rfc4514_string()} is not a CA certificate",
                    reason="NOT_A_CA",
                )

    def with_crls(self, *crls: x509.CertificateRevocationList) -> TrustBundle:
        """A copy whose CRLs from the same issuers as ``crls`` are replaced by them."""
        issuers = {crl.issuer for crl in crls}
        kept = tuple(c for c in self.crls if c.issuer not in issuers)
        return TrustBundle(self.roots, self.intermediates, kept + tuple(crls))

    def to_json(self) -> str:
        doc = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "roots": [c.public_bytes(Encoding.PEM).decode() for c in self.roots],
            "intermediates": [c.public_bytes(Encoding.PEM).decode() for c in self.intermediates],
            "crls": [c.public_bytes(Encoding.PEM).decode() for c in self.crls],
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> TrustBundle:
        """Parse :meth:`to_json` output; InvalidArgument if it is not a bundle."""
        try:
            doc: Any = json.loads(text)
            if doc.get("format") != BUNDLE_FORMAT or doc.get("version") != BUNDLE_VERSION:
                raise ValueError(f"not a {BUNDLE_FORMAT} v{BUNDLE_VERSION} document")
            return cls(
                roots=tuple(x509.load_pem_x509_certificate(p.encode()) for p in doc["roots"]),
                intermediates=tuple(
                    x509.load_pem_x509_certificate(p.encode()) for p in doc["intermediates"]
                ),
                crls=tuple(x509.load_pem_x509_crl(p.encode()) for p in doc["crls"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidArgument(
                f"unreadable trust bundle: {exc}", reason="INVALID_TRUST_BUNDLE"
            ) from None


@dataclass(frozen=True, slots=True)
class VerifiedChain:
    """A path from a leaf to a trusted root, leaf first."""

    certificates: tuple[x509.Certificate, ...]
    not_before: datetime
    """Start of the window in which every certificate of the path is valid."""
    not_after: datetime
    """End of that window."""

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]


@dataclass(frozen=True, slots=True)
class _Crl:
    issuer: str
    this_update: datetime
    next_update: datetime | None
    revoked: dict[int, tuple[datetime, x509.ReasonFlags | None]]


@dataclass(slots=True)
class _Entry:
    chain: VerifiedChain
    # (serial, subject for messages, the issuer's CRL or None) per non-root certificate
    checks: tuple[tuple[int, str, _Crl | None], ...] = field(default=())
    # When no certificate of the path is on its CRL: the window of "now" in which
    # every CRL is current, so a cached path's revocation check is two comparisons.
    clean_from: datetime | None = None
    clean_until: datetime | None = None


def _require_document_signing(
    _policy: xv.Policy, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage
) -> None:
    if DOCUMENT_SIGNING not in eku:
        raise ValueError("leaf certificate lacks EKU id-kp-documentSigning")


def _require_signing_key_usage(
    _policy: xv.Policy, _cert: x509.Certificate, ku: x509.KeyUsage
) -> None:
    if not (ku.digital_signature and ku.content_commitment):
        raise ValueError("leaf KeyUsage lacks digitalSignature or nonRepudiation")


_EE_POLICY = (
    xv.ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, xv.Criticality.AGNOSTIC, None)
    .require_present(x509.ExtendedKeyUsage, xv.Criticality.AGNOSTIC, _require_document_signing)
    .require_present(x509.KeyUsage, xv.Criticality.CRITICAL, _require_signing_key_usage)
)
_CA_POLICY = xv.ExtensionPolicy.webpki_defaults_ca()


class ChainVerifier:
    """Verifies department certificate chains against one :class:`TrustBundle`."""

    def __init__(
        self, bundle: TrustBundle, *, cache_size: int = 1024, crl_grace: timedelta = timedelta(0)
    ) -> None:
        self.bundle = bundle
        self._store = xv.Store(list(bundle.roots))
        self._crl_grace = crl_grace
        self._crls_by_issuer: dict[x509.Name, list[x509.CertificateRevocationList]] = {}
        for crl in bundle.crls:
            self._crls_by_issuer.setdefault(crl.issuer, []).append(crl)
        self._cache: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def verify(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate] = (),
        *,
        at: datetime | None = None,
        now: datetime | None = None,
        cache_key: Hashable | None = None,
    ) -> VerifiedChain:
        """Verify ``leaf`` (with untrusted ``intermediates``) at signing time ``at``.

        ``now`` (default: the clock) judges CRL freshness. ``cache_key``
        identifies the presented certificates (default: their DER bytes).
        Raises VerificationError: CHAIN_INVALID, CERT_EXPIRED, CERT_REVOKED,
        REVOCATION_UNAVAILABLE.
        """
        now = now or datetime.now(UTC)
        at = at or now
        key = cache_key
        if key is None:
            key = tuple(c.public_bytes(Encoding.DER) for c in (leaf, *intermediates))
        entry = self._cache.get(key)  # FIFO eviction: no reordering (and no lock) on hits
        if entry is None or not entry.chain.not_before <= at <= entry.chain.not_after:
            entry = self._build(leaf, intermediates, at)
            with self._lock:
                self._cache[key] = entry
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        if entry.clean_from is None or not entry.clean_from <= now <= entry.clean_until:  # type: ignore[operator]
            self._check_revocation(entry, at, now)
        return entry.chain

    def _build(
        self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], at: datetime
    ) -> _Entry:
        verifier = (
            xv.PolicyBuilder()
            .store(self._store)
            .time(at)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
            .build_client_verifier()
        )
        try:
            path = verifier.verify(leaf, [*intermediates, *self.bundle.intermediates]).chain
        except xv.VerificationError as exc:
            self._diagnose_time(leaf, intermediates, at)
            raise VerificationError(
                Failure.CHAIN_INVALID,
                f"no valid path from {leaf.subject.rfc4514_string()} to a trusted root: {exc}",
            ) from None
        chain = VerifiedChain(
            certificates=tuple(path),
            not_before=max(c.not_valid_before_utc for c in path),
            not_after=min(c.not_valid_after_utc for c in path),
        )
        checks = tuple(
            (cert.serial_number, cert.subject.rfc4514_string(), self._crl_for(issuer))
            for cert, issuer in itertools.pairwise(path)
        )
        entry = _Entry(chain, checks)
        crls = [crl for _, _, crl in checks]
        if all(
            crl is not None and crl.next_update is not None and serial not in crl.revoked
            for serial, _, crl in checks
        ):
            entry.clean_from = max(c.this_update for c in crls if c) - _CLOCK_SKEW
            entry.clean_until = min(c.next_update for c in crls if c and c.next_update)
            entry.clean_until += self._crl_grace
        return entry

    def _diagnose_time(
        self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], at: datetime
    ) -> None:
        """After a failed verification: CERT_EXPIRED if the likely path has a cert out of date."""
        pool = [*intermediates, *self.bundle.intermediates, *self.bundle.roots]
        cert: x509.Certificate | None = leaf
        for _ in range(8):
            if cert is None:
                return
            if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
                raise VerificationError(
                    Failure.CERT_EXPIRED,
                    f"certificate {cert.subject.rfc4514_string()} is valid from "
                    f"{cert.not_valid_before_utc.isoformat()} to "
                    f"{cert.not_valid_after_utc.isoformat()}, not at the signing time "
                    f"{at.isoformat()}",
                )
            if cert.issuer == cert.subject:
                return
            cert = next((c for c in pool if c.subject == cert.issuer), None)

    def _crl_for(self, issuer: x509.Certificate) -> _Crl | None:
        """The newest CRL in the bundle that ``issuer`` signed, indexed by serial."""
        key = issuer.public_key()
        candidates = [
            crl
            for crl in self._crls_by_issuer.get(issuer.subject, [])
            if crl.is_signature_valid(key)  # type: ignore[arg-type]
        ]
        if not candidates:
            return None
        best = max(candidates, key=crl_order)
        return _Crl(
            issuer=issuer.subject.rfc4514_string(),
            this_update=best.last_update_utc,
            next_update=best.next_update_utc,
            revoked={r.serial_number: (r.revocation_date_utc, _reason(r)) for r in best},
        )

    def _check_revocation(self, entry: _Entry, at: datetime, now: datetime) -> None:
        for serial, subject, crl in entry.checks:
            if crl is None:
                raise VerificationError(
                    Failure.REVOCATION_UNAVAILABLE,
                    f"no CRL signed by the issuer of {subject} in the trust bundle",
                )
            if crl.this_update > now + _CLOCK_SKEW or (
                crl.next_update is None or crl.next_update + self._crl_grace < now
            ):
                raise VerificationError(
                    Failure.REVOCATION_UNAVAILABLE,
                    f"the CRL of {crl.issuer} is not current (this update "
                    f"{crl.this_update.isoformat()}, next update "
                    f"{crl.next_update.isoformat() if crl.next_update else 'none'}, "
                    f"now {now.isoformat()})",
                )
            hit = crl.revoked.get(serial)
            if hit is None:
                continue
            revoked_at, reason = hit
            if reason in _BENIGN_REASONS and revoked_at > at:
                continue
            raise VerificationError(
                Failure.CERT_REVOKED,
                f"certificate {subject} (serial {serial:x}) was revoked at "
                f"{revoked_at.isoformat()} ({reason.value if reason else 'unspecified'})",
            )


def crl_order(crl: x509.CertificateRevocationList) -> tuple[int, datetime]:
    """Newer CRLs sort higher: by CRLNumber, then by lastUpdate."""
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = -1
    return number, crl.last_update_utc


def _reason(entry: x509.RevokedCertificate) -> x509.ReasonFlags | None:
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return None
