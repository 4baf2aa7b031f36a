"""The vault on the node's signing deployment (:class:`signing.deployment.Deployment`).

:class:`DeploymentSigner` adapts the deployment facade to
:class:`~licence_vault.signer.LicenceSigner`; :class:`DeploymentPdf` renders
and seals licence PDFs with it (the original at issue, annotated copies with
the use-for-purpose watermark at fetch). Each PDF carries the licence's
identifier, validity period and status reference in its catalog, under the
signature (:data:`licence_vault.verify.PDF_CLAIMS_ENTRY`), so ``zhida verify``
can check a PDF's dates and status offline as it does a JWS's; an annotated
copy also carries its use record's id and the time its use ends (shown on the
page too), so an expired copy is refused offline as well.

:func:`open_deployment` opens the node's deployment and, on a development
node (``auth.dev_keys``) whose PKI was never initialised, makes one with a
certificate and a 电子证照专用章 for every department of
:data:`zhida.auth.mint.DEMO_ORGS` — the way development token keys appear on
first run. Production nodes run ``zhida pki init``,
``zhida pki issue-dept-cert`` and ``zhida seal create`` instead.

Example::

    deployment = open_deployment(config)
    vault = Vault(store, blobs, DeploymentSigner(deployment), pdf=DeploymentPdf(deployment),
                  status_base_uri=...)
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from licence_vault.days import CHINA_STANDARD_TIME
from licence_vault.model import Licence, UseRecord
from licence_vault.signer import NO_VALID_SEAL, IssuerSeal
from licence_vault.status_list import StatusList, sign_status_list_token
from licence_vault.types import LicenceType
from licence_vault.verify import PDF_CLAIM_KEYS, PDF_CLAIMS_ENTRY, annotation_claims
from signing.deployment import Deployment
from signing.pdf_layout import LicenceDocument, render_licence_pdf
from signing.seal import Seal, SealRegistry
from signing.trust import ChainVerifier, TrustBundle
from zhida.config import Config
from zhida.errors import FailedPrecondition

__all__ = ["DeploymentPdf", "DeploymentSigner", "open_deployment"]

log = logging.getLogger("zhida.licence")

_RECHECK_SECONDS = 1.0


def open_deployment(config: Config, departments: Mapping[str, str] | None = None) -> Deployment:
    """The node's deployment; on a development node, made on first use (see module docstring)."""
    try:
        return Deployment.open(config)
    except FailedPrecondition as exc:
        if exc.reason != "PKI_NOT_INITIALISED" or not config.auth.dev_keys:
            raise
    from zhida.auth.mint import DEMO_ORGS

    wanted = DEMO_ORGS if departments is None else departments
    lock_path = config.node.data_dir / ".licence-dev-pki.lock"
    config.node.data_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:  # several workers may start at once
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            try:
                return Deployment.open(config)
            except FailedPrecondition as exc:
                if exc.reason != "PKI_NOT_INITIALISED":
                    raise
            log.warning(
                "creating a development signing PKI with seals for %d departments in %s",
                len(wanted),
                config.node.data_dir,
            )
            deployment = Deployment.init(config)
            for name, uscc in sorted(wanted.items(), key=lambda kv: kv[1]):
                deployment.issue_department_cert(name, uscc)
                deployment.create_seal(uscc)
            return deployment
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class DeploymentSigner:
    """:class:`~licence_vault.signer.LicenceSigner` over the deployment facade.

    The trust bundle, the seal registry and the chain verifier are cached and
    rebuilt when the deployment's files change (looked at once a second), so
    a revoked seal or certificate reaches verification within a second.
    """

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self._lock = threading.Lock()
        self._checked = 0.0
        self._generation: tuple[int, ...] | None = None
        self._trust: TrustBundle | None = None
        self._seals: SealRegistry | None = None
        self._chains: ChainVerifier | None = None

    def _refresh(self) -> tuple[TrustBundle, SealRegistry, ChainVerifier]:
        now = time.monotonic()
        if (
            self._trust is None
            or self._seals is None
            or self._chains is None
            or now - self._checked > _RECHECK_SECONDS
        ):
            with self._lock:
                generation = self.deployment.files.generation()
                if (
                    generation != self._generation
                    or self._trust is None
                    or self._seals is None
                    or self._chains is None
                ):
                    trust = self.deployment.trust_bundle()
                    self._trust = trust
                    self._seals = self.deployment.seal_registry()
                    self._chains = ChainVerifier(trust)
                    self._generation = generation
                self._checked = now
        assert self._trust is not None
        assert self._seals is not None
        assert self._chains is not None
        return self._trust, self._seals, self._chains

    def issuer(self, issuer_code: str, *, at: datetime | None = None) -> IssuerSeal:
        when = at or datetime.now(UTC)
        try:
            department = self.deployment.department(issuer_code, at=when)
            seal = self.deployment.seal_for(issuer_code, at=when)
        except FailedPrecondition as exc:
            raise FailedPrecondition(
                f"department {issuer_code} has no valid seal: {exc.message}",
                reason=NO_VALID_SEAL,
                metadata={"issuer_code": issuer_code, "failure": exc.reason},
            ) from None
        return IssuerSeal(
            issuer_code=issuer_code,
            issuer_name=department.name,
            seal_id=seal.seal_id,
            seal_name=seal.name,
            seal_valid_until=seal.valid_until,
            seal_picture=seal.picture.data,
        )

    def sign_licence(self, issuer_code: str, payload: Mapping[str, Any]) -> str:
        return self.deployment.sign_licence_jws(issuer_code, payload)

    def sign_status_list(self, issuer_code: str, uri: str, status_list: StatusList) -> str:
        department = self.deployment.department(issuer_code)
        # the whole chain up to the root: a node below a parent's CA must carry that CA too
        chain = (department.certificate, *self.deployment.ca_chain)
        return sign_status_list_token(
            self.deployment.key_store, department.key_id, chain, uri=uri, status_list=status_list
        )

    def trust_bundle(self) -> TrustBundle:
        return self._refresh()[0]

    def seal_registry(self) -> SealRegistry:
        return self._refresh()[1]

    def chain_verifier(self) -> ChainVerifier:
        return self._refresh()[2]

    def seals(self) -> list[Seal]:
        return self.deployment.seals()

    def seal_maker_keys(self) -> list[PublicKeyTypes]:
        return self.deployment.seal_makers()


class DeploymentPdf:
    """Renders a licence as an A4 PDF sealed with the issuer's PAdES signature."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment

    def render(
        self,
        licence: Licence,
        licence_type: LicenceType,
        seal: IssuerSeal,
        *,
        annotation: UseRecord | None = None,
    ) -> bytes:
        until = licence.valid_until.isoformat() if licence.valid_until else "长期"
        holder_code = (_code_label(licence), licence.holder_code)
        lines = licence_type.layout_lines(licence.data)
        fields = [
            ("持证主体", licence.holder_name),
            *([] if holder_code in lines else [holder_code]),  # not twice (营业执照 lists it)
            *lines,
            ("有效期", f"{licence.valid_from.isoformat()} 至 {until}"),
        ]
        watermark = annotation.watermark if annotation is not None else None
        if annotation is not None:  # a reader sees until when this copy may be used
            fields.append(("加注件使用期限", f"至 {_beijing_minute(annotation.use_until)}"))
        document = LicenceDocument(
            title=licence_type.document_title,
            licence_id=licence.licence_id,
            fields=fields,
            issuer_name=licence.issuer_name,
            issue_date=str(licence.payload.get("颁证日期", licence.valid_from.isoformat())),
            subtitle="（加注件）" if watermark else None,
            watermark=watermark,
        )
        pdf = render_licence_pdf(document, seal_png=seal.seal_picture)
        return self.deployment.sign_pdf(licence.issuer_code, _with_claims(pdf, licence, annotation))


def _beijing_minute(moment: datetime) -> str:
    return f"{moment.astimezone(CHINA_STANDARD_TIME):%Y-%m-%d %H:%M}（北京时间）"


def _with_claims(pdf: bytes, licence: Licence, annotation: UseRecord | None) -> bytes:
    """``pdf`` with the licence's claims in its catalog (an incremental update, made
    before signing so that the signature covers it); an annotated copy's own claims
    too (:data:`~licence_vault.verify.ANNOTATION_CLAIMS`)."""
    claims: dict[str, Any] = {k: licence.payload[k] for k in PDF_CLAIM_KEYS if k in licence.payload}
    if annotation is not None:
        claims.update(annotation_claims(annotation))
    text = json.dumps(claims, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    writer.root[generic.NameObject(PDF_CLAIMS_ENTRY)] = generic.DictionaryObject(  # type: ignore[no-untyped-call]
        {generic.NameObject("/Claims"): generic.TextStringObject(text)}
    )
    writer.update_root()  # type: ignore[no-untyped-call]
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    return out.getvalue()


def _code_label(licence: Licence) -> str:
    return licence.holder_code_type.label
