"""PAdES signatures on licence PDFs, made inside the key store.

:func:`sign_pdf` adds one invisible signature field ``ZhidaSeal`` to a PDF
(an incremental update, pyHanko) with a PAdES baseline B-B signature
(``/SubFilter /ETSI.CAdES.detached``, SHA-256 — SHA-512 for Ed25519 — the
signing time in the signature dictionary's ``/M``, the signer certificate
and its chain in the CMS). In the same revision, covered by the signature, the document catalog
gets ``/ZhidaSeal << /SealId (…) >>``: the electronic seal the signature is
made under, which a verifier checks the signer against.

:class:`KeyStoreSigner` is pyHanko's ``Signer`` over :class:`signing.keystore.KeyStore`:
pyHanko hands it the DER signed attributes, the store signs them, and the
private key never leaves the store (an HSM backend works unchanged).

Independent verifiers accept the result: poppler's ``pdfsig`` reports the
signature valid and, with the deployment root in its NSS database, the
certificate trusted (tests/integration/signing).

Example::

    pdf = render_licence_pdf(doc, seal_png=seal.picture.data)
    signed = sign_pdf(pdf, store, "dept-11420102MB1A23456R-1", chain, seal_id=seal.seal_id)
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign import fields, signers
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing.keystore import KeyStore
from zhida.errors import InvalidArgument

__all__ = ["SEAL_ENTRY", "SIGNATURE_FIELD", "KeyStoreSigner", "sign_pdf"]

SIGNATURE_FIELD = "ZhidaSeal"
SEAL_ENTRY = "/ZhidaSeal"
"""Catalog entry naming the seal: ``/ZhidaSeal << /SealId (hex id) >>``."""

# CMS signature mechanism per JOSE algorithm, and how to turn the store's JOSE
# signature into the CMS encoding.
_MECHANISMS = {"ES256": ("sha256_ecdsa", "sha256"), "EdDSA": ("ed25519", "sha512")}
_RESERVE_SLACK = 4096
# Signed attributes that do not change from one document to the next.
_CACHEABLE_ATTRS = frozenset(
    {"content_type", "message_digest", "signing_certificate_v2", "cms_algorithm_protection"}
)  # bytes reserved for the CMS beyond the certificates


class KeyStoreSigner(Signer):
    """pyHanko signer whose raw signatures come from ``key_store.sign(key_id, …)``.

    ``chain`` is the signer certificate first, then its CAs (the root may be
    included; verifiers do not take trust from it).
    """

    def __init__(self, key_store: KeyStore, key_id: str, chain: Sequence[x509.Certificate]) -> None:
        if not chain:
            raise InvalidArgument("the certificate chain is empty", reason="EMPTY_CHAIN")
        info = key_store.info(key_id)
        if chain[0].public_key() != info.public_key:
            raise InvalidArgument(
                f"key {key_id!r} is not the key of {chain[0].subject.rfc4514_string()}",
                reason="KEY_CERT_MISMATCH",
            )
        mechanism, self.md_algorithm = _MECHANISMS.get(info.algorithm.name, (None, ""))
        if mechanism is None:
            raise InvalidArgument(
                f"PDF signatures support {sorted(_MECHANISMS)}, not {info.algorithm.name}",
                reason="ALGORITHM_NOT_ALLOWED",
            )
        certs = [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in chain]
        super().__init__(
            signing_cert=certs[0],
            cert_registry=SimpleCertificateStore.from_certs(certs[1:]),  # type: ignore[no-untyped-call]
            signature_mechanism=algos.SignedDigestAlgorithm({"algorithm": mechanism}),
            embed_roots=True,
        )
        self._store = key_store
        self._key_id = key_id
        self._jose = info.algorithm.name
        reserve = sum(len(c.dump()) for c in certs) + _RESERVE_SLACK
        self.reserve = reserve + reserve % 2  # hex digits: pyHanko wants an even count
        self._static_attrs: dict[tuple[str, str, bool, bool], tuple[bytes, ...]] = {}

    async def signed_attrs(
        self,
        data_digest: bytes,
        digest_algorithm: str,
        attr_settings: Any = None,
        content_type: str = "data",
        use_pades: bool = False,
        timestamper: Any = None,
        dry_run: bool = False,
        is_pdf_sig: bool = True,
    ) -> cms.CMSAttributes:
        """pyHanko's signed attributes, with the per-signer ones built once.

        For PAdES only the message digest changes between documents; the
        signing-certificate-v2 and algorithm-protection attributes cost
        asn1crypto ~5 ms to build, so their DER is kept and reused.
        """
        key = (digest_algorithm, content_type, use_pades, is_pdf_sig)
        static = self._static_attrs.get(key)
        if static is None or dry_run or timestamper is not None:
            attrs = await super().signed_attrs(
                data_digest,
                digest_algorithm,
                attr_settings=attr_settings,
                content_type=content_type,
                use_pades=use_pades,
                timestamper=timestamper,
                dry_run=dry_run,
                is_pdf_sig=is_pdf_sig,
            )
            kinds = {attr["type"].native for attr in attrs}
            if not dry_run and timestamper is None and kinds <= _CACHEABLE_ATTRS:
                self._static_attrs[key] = tuple(
                    attr.dump() for attr in attrs if attr["type"].native != "message_digest"
                )
            return attrs
        digest = cms.CMSAttribute({"type": "message_digest", "values": [data_digest]})
        return cms.CMSAttributes([*(cms.CMSAttribute.load(der) for der in static), digest])

    async def async_sign_raw(
        self, data: bytes, digest_algorithm: str, dry_run: bool = False
    ) -> bytes:
        if dry_run:
            return bytes(72 if self._jose == "ES256" else 64)
        signature = self._store.sign(self._key_id, data)
        if self._jose == "ES256":  # JOSE r || s → the DER SEQUENCE CMS wants
            half = len(signature) // 2
            return encode_dss_signature(
                int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
            )
        return signature


class _PdfSigner(signers.PdfSigner):
    """pyHanko's PdfSigner with the signing time (``/M``) chosen by the caller, in UTC."""

    system_time: datetime

    def init_signing_session(self, pdf_out: Any, existing_fields_only: bool = False) -> Any:
        session = super().init_signing_session(pdf_out, existing_fields_only)
        session.system_time = self.system_time  # pyHanko offers no parameter for it
        return session


def sign_pdf(
    pdf: bytes,
    key_store: KeyStore,
    key_id: str,
    chain: Sequence[x509.Certificate],
    *,
    seal_id: str,
    signer: KeyStoreSigner | None = None,
    reason: str | None = "电子证照签章",
    location: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """``pdf`` with a PAdES B-B signature by ``key_id`` under seal ``seal_id``.

    Pass a prebuilt ``signer`` (same store, key and chain) to skip converting
    the certificates on every call. Raises InvalidArgument for a PDF pyHanko
    cannot read or one that is already signed.
    """
    if not seal_id:
        raise InvalidArgument("seal id is empty", reason="INVALID_SEAL_ID")
    signer = signer or KeyStoreSigner(key_store, key_id, chain)
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
        if writer.prev.embedded_signatures:
            raise InvalidArgument("the PDF is already signed", reason="PDF_ALREADY_SIGNED")
        # pyHanko's object model is untyped
        entry = generic.DictionaryObject(  # type: ignore[no-untyped-call]
            {generic.NameObject("/SealId"): generic.TextStringObject(seal_id)}
        )
        writer.root[SEAL_ENTRY] = entry
        writer.update_root()  # type: ignore[no-untyped-call]
        meta = signers.PdfSignatureMetadata(
            field_name=SIGNATURE_FIELD,
            subfilter=fields.SigSeedSubFilter.PADES,
            md_algorithm=signer.md_algorithm,  # Ed25519 (RFC 8419) implies SHA-512
            reason=reason,
            location=location,
        )
        pdf_signer = _PdfSigner(meta, signer=signer)
        pdf_signer.system_time = (now or datetime.now(UTC)).astimezone(UTC)
        out = pdf_signer.sign_pdf(writer, bytes_reserved=signer.reserve)
    except (PdfError, ValueError) as exc:
        raise InvalidArgument(f"cannot sign this PDF: {exc}", reason="INVALID_PDF") from None
    data: bytes = out.getvalue()
    return data
