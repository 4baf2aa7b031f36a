"""Everything an offline verifier needs, in one JSON file.

``zhida pki export-trust FILE`` writes a :class:`VerifierBundle`: the
:class:`signing.trust.TrustBundle` (roots, intermediates, current CRLs) plus
the seal makers' public keys, the seals issued so far and the seal
revocation list. The file is a superset of the trust bundle's own JSON
(same ``format`` and ``version``, extra keys ``seal_makers``, ``seals``,
``seal_revocations``), so :meth:`TrustBundle.from_json` reads it too.

A bundle is only as trustworthy as the channel it came over: it carries its
own roots. Distribute it like a CA certificate.

Example::

    bundle = VerifierBundle.from_json(Path("trust.json").read_text())
    result = verify_document(data, bundle.trust, bundle.registry())
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from signing.errors import VerificationError
from signing.seal import Seal, SealRegistry, SealRevocations
from signing.trust import TrustBundle
from zhida.errors import InvalidArgument

__all__ = ["VerifierBundle"]


@dataclass(frozen=True, eq=False)
class VerifierBundle:
    """A trust bundle plus the seal registry and seal revocations."""

    trust: TrustBundle
    seal_makers: tuple[PublicKeyTypes, ...] = ()
    seals: tuple[Seal, ...] = ()
    seal_revocations: SealRevocations = field(default_factory=SealRevocations)

    def registry(self) -> SealRegistry:
        """A seal registry of the bundle's seals (each maker signature checked once).

        Raises VerificationError if a seal was not made by one of the bundle's makers.
        """
        return SealRegistry(self.seal_makers, self.seal_revocations, self.seals)

    def to_json(self) -> str:
        doc: dict[str, Any] = json.loads(self.trust.to_json())
        doc["seal_makers"] = [
            key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
            for key in self.seal_makers
        ]
        doc["seals"] = [json.loads(seal.to_json()) for seal in self.seals]
        doc["seal_revocations"] = json.loads(self.seal_revocations.to_json())
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> VerifierBundle:
        """Parse :meth:`to_json` output (or a plain trust bundle: no seals)."""
        trust = TrustBundle.from_json(text)
        try:
            doc = json.loads(text)
            makers = tuple(load_pem_public_key(pem.encode()) for pem in doc.get("seal_makers", []))
            seals = tuple(Seal.from_json(json.dumps(item)) for item in doc.get("seals", []))
            revocations = SealRevocations.from_json(json.dumps(doc.get("seal_revocations", [])))
        except (ValueError, TypeError, AttributeError, VerificationError) as exc:
            message = exc.message if isinstance(exc, VerificationError) else str(exc)
            raise InvalidArgument(
                f"unreadable verifier bundle: {message}", reason="INVALID_TRUST_BUNDLE"
            ) from None
        return cls(trust, makers, seals, revocations)

    @classmethod
    def of(
        cls,
        trust: TrustBundle,
        makers: Iterable[PublicKeyTypes],
        seals: Iterable[Seal],
        revocations: SealRevocations | None = None,
    ) -> VerifierBundle:
        return cls(trust, tuple(makers), tuple(seals), revocations or SealRevocations())
