"""A child node's CA under the one deployment root, through a CSR: the deployment side.

Three steps in two data directories; the root key never leaves the root
holder (:mod:`signing.sub_ca` has the checks)::

    # the child (here a city node): its CA key in its own key store, and a CSR
    csr = Deployment.request_ca(city_config, level=Level.CITY)     # zhida pki init --csr …
    # the parent (the root holder, or a node whose CA is above city level)
    certs = parent.issue_sub_ca(csr_pem, Level.CITY)              # zhida pki issue-sub-ca …
    # the child: the certificate must hold its key and chain to the root it was given
    city = Deployment.import_ca(city_config, certs, root=root_cert, crls=parent.crls())

The child then issues department certificates and seals and signs its own
CRL like any node. Without the root key it cannot revoke its own CA (the
parent does: the CA is in the parent's ``sub_cas``) and does not sign the
CRLs of the CAs above it: it keeps copies (:meth:`CaOps.import_crls`,
``zhida pki import-crls``) and puts them in its trust bundle. They expire
after 7 days, and verifiers fail closed (REVOCATION_UNAVAILABLE) without a
current CRL for every CA of a chain, so a child imports fresh ones from its
parent's ``zhida pki export-trust`` regularly (or verifiers merge the
parent's bundle).

The root holder signs child CAs with the root; a node without the root key
(itself a child) signs them with its own CA, for levels below its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from signing.deployment_ops import (
    SEAL_MAKER_KEY,
    DeploymentOps,
    ca_key_id,
    default_ca_name,
)
from signing.deployment_state import CaRecord, CaRequestRecord, PkiState, SubCaRecord
from signing.node_verifier import ca_level
from signing.pki import CA_VALIDITY, issue_intermediate_ca
from signing.sub_ca import check_ca_certificate, check_upstream_crl, create_ca_csr, read_ca_csr
from signing.trust import crl_order
from zhida.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from zhida.files import atomic_write
from zhida.regions import Level

__all__ = ["CaOps"]


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode()


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


class CaOps(DeploymentOps):
    """Child CAs: requesting, issuing, importing; see the module docstring."""

    # -- the child ------------------------------------------------------------------------

    def _request_ca(
        self, level: Level | None, ca_name: str | None, now: datetime | None
    ) -> x509.CertificateSigningRequest:
        level = level or max(self.config.node.level, Level.PROVINCE)
        if level is Level.NATIONAL:
            raise InvalidArgument(
                "a national CA is the root: run 'zhida pki init' without --csr",
                reason="INVALID_LEVEL",
            )
        when = (now or datetime.now(UTC)).replace(microsecond=0)
        with self.files.locked():
            self._refuse_existing()
            key_id = ca_key_id(level)
            self._generate_new(key_id, SEAL_MAKER_KEY)
            name = ca_name or default_ca_name(self.config)
            csr = create_ca_csr(name, level, self._issuer_key(key_id))
            pem = csr.public_bytes(Encoding.PEM).decode()
            record = CaRequestRecord(key_id, level.name, pem, when.isoformat())
            atomic_write(self.files.request_path, record.to_json().encode(), mode=0o644)
        return csr

    def pending_request(self) -> CaRequestRecord | None:
        """The CA request waiting for its certificate, if any."""
        try:
            text = self.files.request_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return CaRequestRecord.from_json(text)

    def _import_ca(
        self,
        certificates: Sequence[x509.Certificate],
        root: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        crls: Iterable[x509.CertificateRevocationList],
        now: datetime | None,
    ) -> list[x509.CertificateRevocationList]:
        if not certificates:
            raise InvalidArgument("no CA certificate to import", reason="INVALID_CERTIFICATE")
        with self.files.locked():
            if self.files.exists():
                raise AlreadyExists(
                    f"a PKI already exists in {self.files.dir}", reason="PKI_EXISTS"
                )
            request = self.pending_request()
            if request is None:
                raise FailedPrecondition(
                    f"no CA request in {self.files.dir}: run 'zhida pki init --csr FILE' first",
                    reason="NO_CA_REQUEST",
                )
            level = Level[request.level]
            path = check_ca_certificate(
                certificates[0],
                public_key=self.key_store.public_key(request.key_id),
                level=level,
                root=root,
                intermediates=[*certificates[1:], *intermediates],
                at=now,
            )
            state = PkiState(
                root=CaRecord("", _pem(path[-1]), ca_level(path[-1]).name),
                ca=CaRecord(request.key_id, _pem(path[0]), level.name),
                seal_maker_key_id=SEAL_MAKER_KEY,
                chain=[_pem(c) for c in path[1:-1]],
            )
            self.files.save(state)
            self._write_crls(state, now)
            accepted = self._store_upstream(crls, path[1:])
            self.files.request_path.unlink()
        return accepted

    def import_crls(
        self, crls: Iterable[x509.CertificateRevocationList]
    ) -> list[x509.CertificateRevocationList]:
        """Keep the CRLs signed by the CAs above this child node's CA that are newer than
        the copies held; the ones taken. InvalidArgument NO_USABLE_CRL if none is theirs."""
        if self.holds_root:
            raise FailedPrecondition(
                "this node holds the root key and signs its own CRLs", reason="ROOT_HELD"
            )
        crls = list(crls)
        issuers = (*self.ca_chain[1:], self.root_certificate)
        if crls and not any(check_upstream_crl(crl, issuers) for crl in crls):
            raise InvalidArgument(
                "none of the CRLs is signed by a CA above this node's CA", reason="NO_USABLE_CRL"
            )
        with self.files.locked():
            return self._store_upstream(crls, issuers)

    def _store_upstream(
        self, crls: Iterable[x509.CertificateRevocationList], issuers: Sequence[x509.Certificate]
    ) -> list[x509.CertificateRevocationList]:
        accepted = []
        for crl in crls:
            issuer = check_upstream_crl(crl, issuers)
            if issuer is None:
                continue  # another CA's (a bundle holds many), or forged
            digest = hashlib.sha256(issuer.subject.public_bytes()).hexdigest()[:16]
            path = self.files.upstream_crls_dir / f"{digest}.pem"
            try:
                held = x509.load_pem_x509_crl(path.read_bytes())
            except (FileNotFoundError, ValueError):
                held = None
            if held is not None and crl_order(held) >= crl_order(crl):
                continue  # the same list, or an older one: never go back
            self.files.upstream_crls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write(path, crl.public_bytes(Encoding.PEM), mode=0o644)
            accepted.append(crl)
        return accepted

    # -- the parent -----------------------------------------------------------------------

    def issue_sub_ca(
        self,
        csr: bytes,
        level: Level,
        *,
        validity: timedelta = CA_VALIDITY,
        now: datetime | None = None,
    ) -> tuple[x509.Certificate, ...]:
        """Check a child node's CSR and issue its CA for ``level``: the certificate,
        then the CAs between it and the root (what the child imports).

        InvalidArgument: INVALID_CSR, CSR_BAD_SIGNATURE, CA_LEVEL_MISMATCH (the
        CSR asks for another level), CA_LEVEL_NOT_BELOW_PARENT.
        """
        request = read_ca_csr(csr)
        if request.level is not None and request.level is not level:
            raise InvalidArgument(
                f"the CSR asks for a {request.level.name.lower()} CA, not a "
                f"{level.name.lower()} one",
                reason="CA_LEVEL_MISMATCH",
            )
        when = (now or datetime.now(UTC)).replace(microsecond=0)
        with self.files.locked():
            state = self.files.load()
            which = _issuer_for(state, level)
            cert = issue_intermediate_ca(
                self._ca(which), request.name, level, request.public_key, validity=validity, now=now
            )
            state.sub_cas.append(SubCaRecord(_pem(cert), level.name, which, when.isoformat()))
            self.files.save(state)
        return (cert,) if which == "root" else (cert, *self.ca_chain)

    def sub_ca_certificates(self) -> list[x509.Certificate]:
        """The child nodes' CAs this node issued, oldest first."""
        return [_cert(r.cert_pem) for r in self.files.load().sub_cas]


def _issuer_for(state: PkiState, level: Level) -> str:
    """The root where its key is held (it may issue every level), else this node's CA."""
    if state.root.key_id:
        return "root"
    own = Level[state.ca.level]
    if level <= own:
        raise InvalidArgument(
            f"this node's CA is at {own.name.lower()} level: it issues CAs below it only, "
            f"not {level.name.lower()}; ask a node above",
            reason="CA_LEVEL_NOT_BELOW_PARENT",
        )
    return "ca"
