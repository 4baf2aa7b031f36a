"""Electronic seals (电子印章) modelled on GB/T 38540-2020.

A :class:`Seal` is {header (version, vendor id), seal id, properties (type,
purpose, name, owner department and USCC, the SHA-256 hashes of the signer
certificates it is bound to, created, valid from, valid until), picture (PNG,
size in mm)}, signed by the seal-making authority (制章者). GB/T 38540 encodes
the seal in ASN.1 DER; this is its JSON rendering, and the signed bytes are
the RFC 8785 canonical JSON of :meth:`Seal.body` — which includes the maker's
key id and algorithm, so neither can be swapped.

A verifier (:func:`verify_seal`, or :class:`SealRegistry` for many
signatures) checks the maker's signature, that the seal is not on the
:class:`SealRevocations` list, that it was valid at the signing time, and that
the signer's certificate is one the seal is bound to. Revocation refuses every
signature, old ones included; a seal that should keep its past signatures
valid is left to expire (``valid_until``) instead.

Example::

    seal = create_seal(
        store, "zhizhang-2025",                  # the seal maker's key in a KeyStore
        purpose=SealPurpose.LICENCE, owner_name="武汉市江岸区市场监督管理局",
        owner_uscc="11420102MB1A23456R", signer_certificates=[dept_cert],
        valid_from=start, valid_until=start + timedelta(days=3 * 365),
    )
    verify_seal(seal, store.public_key("zhizhang-2025"), at=signed_at, signer_cert=dept_cert)
"""

from __future__ import annotations

import enum
import hashlib
import json
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from signing.algorithms import allowed_algorithms, get_algorithm
from signing.canonical import b64url_decode, b64url_encode, canonical_json
from signing.errors import Failure, VerificationError
from signing.keystore import KeyStore
from signing.pki import cert_sha256, department_identity, validate_uscc
from zhida.errors import InvalidArgument

__all__ = [
    "Seal",
    "SealPicture",
    "SealPurpose",
    "SealRegistry",
    "SealRevocations",
    "create_seal",
    "maker_key_id",
    "verify_seal",
]

SEAL_VERSION = 4  # GB/T 38540-2020's SES_Header version
ORGANISATION_SEAL = 1  # GB/T 38540 seal type: 1 单位印章, 2 个人印章


class SealPurpose(enum.Enum):
    """What a seal is for. The two-digit codes are zhida's own."""

    OFFICIAL = ("01", "公章")
    CONTRACT = ("02", "合同专用章")
    FINANCE = ("03", "财务专用章")
    INVOICE = ("04", "发票专用章")
    LICENCE = ("05", "电子证照专用章")
    BUSINESS = ("06", "业务专用章")

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def label(self) -> str:
        return self.value[1]

    @classmethod
    def from_code(cls, code: str) -> SealPurpose:
        for purpose in cls:
            if purpose.code == code:
                return purpose
        raise ValueError(f"unknown seal purpose code {code!r}")


@dataclass(frozen=True, slots=True)
class SealPicture:
    """The seal's image: PNG bytes and its printed size in millimetres."""

    data: bytes
    width_mm: int = 42
    height_mm: int = 42
    type: str = "png"


@dataclass(frozen=True, slots=True)
class Seal:
    """A signed electronic seal; build with :func:`create_seal`."""

    seal_id: str
    purpose: SealPurpose
    name: str
    owner_name: str
    owner_uscc: str
    cert_hashes: tuple[str, ...]
    created: datetime
    valid_from: datetime
    valid_until: datetime
    picture: SealPicture
    maker_key_id: str
    algorithm: str
    signature: bytes = field(repr=False)
    vendor_id: str = "zhida"
    version: int = SEAL_VERSION

    def body(self) -> dict[str, Any]:
        """The signed part: everything but the signature."""
        return {
            "header": {"id": "ES", "version": self.version, "vid": self.vendor_id},
            "esID": self.seal_id,
            "property": {
                "type": ORGANISATION_SEAL,
                "purpose": self.purpose.code,
                "name": self.name,
                "owner": {"name": self.owner_name, "uscc": self.owner_uscc},
                "certListType": "hash-sha256",
                "certList": list(self.cert_hashes),
                "createDate": _fmt(self.created),
                "validStart": _fmt(self.valid_from),
                "validEnd": _fmt(self.valid_until),
            },
            "picture": {
                "type": self.picture.type,
                "data": b64url_encode(self.picture.data),
                "width": self.picture.width_mm,
                "height": self.picture.height_mm,
            },
            "maker": {"keyId": self.maker_key_id, "alg": self.algorithm},
        }

    def to_json(self) -> str:
        return json.dumps(
            {"body": self.body(), "signature": b64url_encode(self.signature)}, ensure_ascii=False
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Seal:
        """Parse :meth:`to_json` output; VerificationError(MALFORMED) if it is not a seal."""
        try:
            doc = json.loads(text)
            body, prop, pic = doc["body"], doc["body"]["property"], doc["body"]["picture"]
            if body["header"]["id"] != "ES" or prop["type"] != ORGANISATION_SEAL:
                raise ValueError("not a zhida organisation seal")
            if prop["certListType"] != "hash-sha256":
                raise ValueError("unsupported certificate list type")
            return cls(
                seal_id=_str(body["esID"]),
                purpose=SealPurpose.from_code(prop["purpose"]),
                name=_str(prop["name"]),
                owner_name=_str(prop["owner"]["name"]),
                owner_uscc=_str(prop["owner"]["uscc"]),
                cert_hashes=tuple(_str(h) for h in prop["certList"]),
                created=_parse(prop["createDate"]),
                valid_from=_parse(prop["validStart"]),
                valid_until=_parse(prop["validEnd"]),
                picture=SealPicture(
                    b64url_decode(pic["data"]), int(pic["width"]), int(pic["height"]), pic["type"]
                ),
                maker_key_id=_str(body["maker"]["keyId"]),
                algorithm=_str(body["maker"]["alg"]),
                signature=b64url_decode(doc["signature"]),
                vendor_id=_str(body["header"]["vid"]),
                version=int(body["header"]["version"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise VerificationError(Failure.MALFORMED, f"not a seal: {exc}") from None


def maker_key_id(key: PublicKeyTypes | x509.Certificate) -> str:
    """Hex SHA-256 of the maker's SubjectPublicKeyInfo DER."""
    public = key.public_key() if isinstance(key, x509.Certificate) else key
    spki = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def create_seal(
    maker: KeyStore,
    maker_key: str,
    *,
    purpose: SealPurpose,
    owner_name: str,
    owner_uscc: str,
    signer_certificates: Sequence[x509.Certificate],
    valid_from: datetime,
    valid_until: datetime,
    seal_id: str | None = None,
    name: str | None = None,
    picture: SealPicture | None = None,
    now: datetime | None = None,
) -> Seal:
    """Make and sign a seal with the maker's key ``maker_key`` in ``maker``.

    Every signer certificate must belong to the owner (same USCC). Without
    ``picture`` the seal image is drawn by :func:`signing.seal_image.render_seal_image`.
    """
    owner_uscc = validate_uscc(owner_uscc)
    if not signer_certificates:
        raise InvalidArgument("a seal needs at least one signer certificate", reason="NO_SIGNERS")
    for cert in signer_certificates:
        if department_identity(cert).uscc != owner_uscc:
            raise InvalidArgument(
                f"certificate {cert.subject.rfc4514_string()} is not the owner's ({owner_uscc})",
                reason="SIGNER_NOT_OWNER",
            )
    if not valid_from < valid_until:
        raise InvalidArgument("valid_from must precede valid_until", reason="INVALID_VALIDITY")
    if picture is None:
        from signing.seal_image import render_seal_image  # Pillow only when drawing

        picture = SealPicture(render_seal_image(owner_name, purpose.label))
    info = maker.info(maker_key)
    unsigned = Seal(
        seal_id=seal_id or uuid.uuid4().hex,
        purpose=purpose,
        name=name or f"{owner_name}{purpose.label}",
        owner_name=owner_name,
        owner_uscc=owner_uscc,
        cert_hashes=tuple(cert_sha256(c) for c in signer_certificates),
        created=_utc(now or datetime.now(UTC)),
        valid_from=_utc(valid_from),
        valid_until=_utc(valid_until),
        picture=picture,
        maker_key_id=maker_key_id(info.public_key),
        algorithm=info.algorithm.name,
        signature=b"",
    )
    signature = maker.sign(maker_key, canonical_json(unsigned.body()))
    return replace(unsigned, signature=signature)


def verify_seal(
    seal: Seal,
    maker: PublicKeyTypes | x509.Certificate,
    *,
    at: datetime,
    signer_cert: x509.Certificate,
    revocations: SealRevocations | None = None,
) -> None:
    """Check ``seal`` for a signature made at ``at`` by ``signer_cert``.

    Raises VerificationError (SEAL_INVALID, ALG_NOT_ALLOWED, SEAL_REVOKED,
    SEAL_EXPIRED, SEAL_NOT_BOUND) at the first failed check.
    """
    verify_seal_signature(seal, maker)
    check_seal_use(seal, at=at, signer_hash=cert_sha256(signer_cert), revocations=revocations)


def verify_seal_signature(seal: Seal, maker: PublicKeyTypes | x509.Certificate) -> None:
    """The seal maker's signature only (SEAL_INVALID, ALG_NOT_ALLOWED)."""
    public = maker.public_key() if isinstance(maker, x509.Certificate) else maker
    if seal.maker_key_id != maker_key_id(public):
        raise VerificationError(
            Failure.SEAL_INVALID, f"seal {seal.seal_id} was not made with this seal maker's key"
        )
    if seal.algorithm not in allowed_algorithms() or not get_algorithm(seal.algorithm).accepts(
        public
    ):
        raise VerificationError(
            Failure.ALG_NOT_ALLOWED,
            f"seal {seal.seal_id} uses algorithm {seal.algorithm!r}, not allowed for this key",
        )
    signed = canonical_json(seal.body())
    if not get_algorithm(seal.algorithm).verify(public, seal.signature, signed):
        raise VerificationError(
            Failure.SEAL_INVALID, f"the seal maker's signature on seal {seal.seal_id} is invalid"
        )
    if isinstance(maker, x509.Certificate) and not (
        maker.not_valid_before_utc <= seal.created <= maker.not_valid_after_utc
    ):
        raise VerificationError(
            Failure.SEAL_INVALID,
            f"seal {seal.seal_id} was made outside the validity of the maker's certificate",
        )


def check_seal_use(
    seal: Seal, *, at: datetime, signer_hash: str, revocations: SealRevocations | None
) -> None:
    """Revocation, validity at ``at`` and signer binding (maker signature not rechecked)."""
    if revocations is not None and (revoked := revocations.get(seal.seal_id)) is not None:
        raise VerificationError(
            Failure.SEAL_REVOKED,
            f"seal {seal.seal_id} was revoked at {revoked[0].isoformat()}: {revoked[1]}",
        )
    if not seal.valid_from <= at <= seal.valid_until:
        raise VerificationError(
            Failure.SEAL_EXPIRED,
            f"seal {seal.seal_id} is valid from {seal.valid_from.isoformat()} to "
            f"{seal.valid_until.isoformat()}, not at the signing time {at.isoformat()}",
        )
    if signer_hash not in seal.cert_hashes:
        raise VerificationError(
            Failure.SEAL_NOT_BOUND,
            f"signer certificate {signer_hash[:16]}… is not bound to seal {seal.seal_id}",
        )


class SealRevocations:
    """Revoked seal ids with when and why; load it from a trusted source."""

    def __init__(self, entries: Iterable[tuple[str, datetime, str]] = ()) -> None:
        self._lock = threading.Lock()
        self._revoked: dict[str, tuple[datetime, str]] = {
            seal_id: (_utc(at), reason) for seal_id, at, reason in entries
        }

    def revoke(self, seal_id: str, reason: str, at: datetime | None = None) -> None:
        with self._lock:
            self._revoked.setdefault(seal_id, (_utc(at or datetime.now(UTC)), reason))

    def get(self, seal_id: str) -> tuple[datetime, str] | None:
        """(revoked at, reason) or None."""
        return self._revoked.get(seal_id)

    def __contains__(self, seal_id: object) -> bool:
        return seal_id in self._revoked

    def to_json(self) -> str:
        items = sorted(self._revoked.items())
        return json.dumps(
            [{"seal_id": s, "revoked_at": _fmt(t), "reason": r} for s, (t, r) in items],
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> SealRevocations:
        try:
            entries = json.loads(text)
            return cls((e["seal_id"], _parse(e["revoked_at"]), e["reason"]) for e in entries)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(
                f"unreadable seal revocation list: {exc}", reason="INVALID_SEAL_REVOCATIONS"
            ) from None


class SealRegistry:
    """The seals a verifier knows, each checked once against a trusted seal maker."""

    def __init__(
        self,
        makers: Iterable[PublicKeyTypes | x509.Certificate],
        revocations: SealRevocations | None = None,
        seals: Iterable[Seal] = (),
    ) -> None:
        self._makers = {maker_key_id(m): m for m in makers}
        self.revocations = revocations if revocations is not None else SealRevocations()
        self._seals: dict[str, Seal] = {}
        for seal in seals:
            self.add(seal)

    def add(self, seal: Seal) -> None:
        """Verify the maker's signature and remember ``seal``; VerificationError if invalid."""
        maker = self._makers.get(seal.maker_key_id)
        if maker is None:
            raise VerificationError(
                Failure.SEAL_INVALID, f"seal {seal.seal_id} was made by an untrusted seal maker"
            )
        verify_seal_signature(seal, maker)
        self._seals[seal.seal_id] = seal

    def check(self, seal_id: str, *, at: datetime, signer_hash: str) -> Seal:
        """The seal, if usable at ``at`` by the signer with ``signer_hash``."""
        seal = self._seals.get(seal_id)
        if seal is None:
            raise VerificationError(Failure.SEAL_UNKNOWN, f"seal {seal_id!r} is not known")
        check_seal_use(seal, at=at, signer_hash=signer_hash, revocations=self.revocations)
        return seal


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise InvalidArgument("datetimes must be timezone-aware", reason="NAIVE_DATETIME")
    return value.astimezone(UTC).replace(microsecond=0)


def _fmt(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    value = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    return value.replace(tzinfo=UTC)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value
