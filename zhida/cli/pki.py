"""``zhida pki`` and ``zhida seal``: the node's signing PKI and electronic seals.

Keys live in ``<data_dir>/keys/pki``, encrypted with the passphrase from
``ZHIDA_PKI_PASSPHRASE`` or the file named by ``ZHIDA_PKI_PASSPHRASE_FILE`` /
``--passphrase-file`` (unencrypted only with ``auth.dev_keys = true``, with a
banner on stderr). State is in ``<data_dir>/pki`` (see :mod:`signing.deployment`).

Example::

    $ export ZHIDA_PKI_PASSPHRASE=...            # or --passphrase-file /run/secrets/pki
    $ zhida pki init                             # the root holder: root CA + issuing CA
    $ zhida pki init --csr city.csr --level city # a child node: CA key + CSR, no root
    $ zhida pki issue-sub-ca city.csr --level city --out city-ca.pem   # on the parent
    $ zhida pki export-trust trust.json                                # on the parent
    $ zhida pki import-ca city-ca.pem --root trust.json                # on the child
    $ zhida pki import-crls trust.json           # the child, weekly: the parent's CRLs
    $ zhida pki issue-dept-cert --name 武汉市市场监督管理局 --uscc 11420100MB00000009
    $ zhida seal create --dept-uscc 11420100MB00000009 --purpose 电子证照专用章 --valid-days 1095
    $ zhida pki list
    $ zhida pki revoke 2c93432ca9312718aa427f0f034e804bf212a68b --reason keyCompromise
    $ zhida seal revoke 84b8a9b1a46549aa9c6d719ab436cace --reason 印章遗失
    $ zhida pki export-trust trust.json            # for offline `zhida verify --trust`

Errors (a wrong passphrase, an unknown USCC, …) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from rich.console import Console
from rich.table import Table

from signing.deployment import Deployment, pki_key_store
from signing.keystore import FileKeyStore
from signing.seal import SealPurpose
from signing.sub_ca import read_ca_csr, read_certificates
from signing.trust import TrustBundle
from zhida.config import Config, load_config
from zhida.errors import InvalidArgument
from zhida.files import atomic_write
from zhida.regions import Level

_REASONS = (
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "privilegeWithdrawn",
    "aACompromise",
)


_LEVELS = ("province", "city", "county")

_KEYS_HELP = """\
private keys are written to <data_dir>/keys/pki, encrypted with a passphrase from
(first found) --passphrase-file FILE, $ZHIDA_PKI_PASSPHRASE_FILE, $ZHIDA_PKI_PASSPHRASE.

For a real node, give the passphrase from a file (a secret mount) and turn dev keys off,
so that a missing passphrase is an error instead of clear keys:

  ZHIDA_AUTH__DEV_KEYS=false ZHIDA_PKI_PASSPHRASE_FILE=/run/secrets/pki zhida pki init

With auth.dev_keys = true (the default, for demos and tests) and no passphrase, keys are
written UNENCRYPTED, with a warning banner on stderr.
"""


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help="file holding the key store passphrase (default: $ZHIDA_PKI_PASSPHRASE_FILE, "
        "or the passphrase in $ZHIDA_PKI_PASSPHRASE)",
    )

    raw = argparse.RawDescriptionHelpFormatter
    pki = subparsers.add_parser(
        "pki",
        help="the signing PKI: CAs, department certificates",
        epilog=_KEYS_HELP,
        formatter_class=raw,
    )
    sub = pki.add_subparsers(dest="pki_command", metavar="SUBCOMMAND", title="subcommands")
    sub.required = True

    init = sub.add_parser(
        "init",
        parents=[common],
        help="create the root and issuing CA (or, with --csr, a child node's CA request)",
        description="Create this node's signing PKI. Without --csr: a new deployment root and "
        "an issuing CA (the root holder). With --csr: only this node's CA key and a "
        "certificate request for the parent, so that the CA chains to the deployment's one "
        "root (then 'zhida pki import-ca').",
        epilog=_KEYS_HELP,
        formatter_class=raw,
    )
    init.add_argument("--root-name", help="root CA name (default: zhida 部署根CA <node>)")
    init.add_argument("--ca-name", help="issuing CA name")
    init.add_argument(
        "--csr", type=Path, metavar="OUT", help="write a CA request here instead of a root"
    )
    init.add_argument(
        "--level", choices=_LEVELS, help="the requested CA's level (default: the node's)"
    )
    init.set_defaults(handler=cmd_init)

    sub_ca = sub.add_parser(
        "issue-sub-ca",
        parents=[common],
        help="issue a child node's CA from its CSR (on the root holder or a parent CA)",
    )
    sub_ca.add_argument("csr", type=Path, help="the child's CSR ('zhida pki init --csr')")
    sub_ca.add_argument("--level", choices=_LEVELS, required=True, help="the child CA's level")
    sub_ca.add_argument(
        "--out", type=Path, required=True, help="PEM file: the CA certificate and its chain"
    )
    sub_ca.add_argument("--valid-days", type=int, default=3650, help="default 3650")
    sub_ca.set_defaults(handler=cmd_issue_sub_ca)

    import_ca = sub.add_parser(
        "import-ca", parents=[common], help="make the CA the parent issued this node's CA"
    )
    import_ca.add_argument("certificate", type=Path, help="'zhida pki issue-sub-ca' output")
    import_ca.add_argument(
        "--root",
        type=Path,
        required=True,
        help="the deployment root: its PEM certificate, or the parent's 'zhida pki "
        "export-trust' file (whose CRLs are imported too)",
    )
    import_ca.add_argument(
        "--chain", type=Path, action="append", default=[], help="more intermediate CAs (PEM)"
    )
    import_ca.set_defaults(handler=cmd_import_ca)

    import_crls = sub.add_parser(
        "import-crls",
        parents=[common],
        help="a child node: keep current CRLs of the CAs above its own (they last 7 days)",
    )
    import_crls.add_argument(
        "files", type=Path, nargs="+", help="PEM CRLs or the parent's export-trust file"
    )
    import_crls.set_defaults(handler=cmd_import_crls)

    issue = sub.add_parser(
        "issue-dept-cert",
        parents=[common],
        help="key + signing certificate for a department (again: rotates its key)",
        description="Generate a department signing key and issue its certificate. For a "
        "department that has one already this is a rotation: its previous keys are retired "
        "(they sign no more; what they signed stays verifiable) and it signs again once "
        "'zhida seal create' binds a seal to the new certificate.",
    )
    issue.add_argument("--name", required=True, help="department name, e.g. 武汉市市场监督管理局")
    issue.add_argument("--uscc", required=True, help="unified social credit code (18 characters)")
    issue.add_argument("--alg", choices=("ES256", "EdDSA"), default="ES256")
    issue.add_argument("--valid-days", type=int, default=730, help="default 730")
    issue.set_defaults(handler=cmd_issue)

    revoke = sub.add_parser("revoke", parents=[common], help="revoke a certificate; new CRL")
    revoke.add_argument("serial", help="serial number in hex (as `zhida pki list` shows it)")
    revoke.add_argument("--reason", choices=_REASONS, default="unspecified")
    revoke.set_defaults(handler=cmd_revoke)

    export = sub.add_parser(
        "export-trust", parents=[common], help="write the trust bundle for offline verifiers"
    )
    export.add_argument("file", type=Path, help="output JSON file")
    export.set_defaults(handler=cmd_export)

    listing = sub.add_parser("list", parents=[common], help="CAs and department certificates")
    listing.set_defaults(handler=cmd_list)

    seal = subparsers.add_parser("seal", help="electronic seals (GB/T 38540)")
    seal_sub = seal.add_subparsers(dest="seal_command", metavar="SUBCOMMAND", title="subcommands")
    seal_sub.required = True
    create = seal_sub.add_parser("create", parents=[common], help="make a seal for a department")
    create.add_argument("--dept-uscc", required=True, help="the owner department's USCC")
    create.add_argument(
        "--purpose",
        default=SealPurpose.LICENCE.label,
        help=f"one of {', '.join(p.label for p in SealPurpose)} (default 电子证照专用章)",
    )
    create.add_argument("--valid-days", type=int, default=3 * 365, help="default 1095")
    create.add_argument("--name", help="seal name (default: department name + purpose)")
    create.set_defaults(handler=cmd_seal_create)
    seal_list = seal_sub.add_parser("list", parents=[common], help="seals and their state")
    seal_list.set_defaults(handler=cmd_seal_list)
    seal_revoke = seal_sub.add_parser("revoke", parents=[common], help="revoke a seal")
    seal_revoke.add_argument("seal_id")
    seal_revoke.add_argument("--reason", required=True, help="why, e.g. 印章遗失")
    seal_revoke.set_defaults(handler=cmd_seal_revoke)


def _config(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config) if getattr(args, "config", None) else None)


def _open(args: argparse.Namespace) -> Deployment:
    return Deployment.open(_config(args), passphrase_file=args.passphrase_file)


def _store(args: argparse.Namespace, config: Config) -> FileKeyStore:
    return pki_key_store(config, passphrase_file=args.passphrase_file)


def _warn_clear_keys(store: FileKeyStore) -> None:
    """A banner on stderr when keys were just written unencrypted: not one log line."""
    if store.encrypts:
        return
    rule = "!" * 78
    print(
        f"{rule}\n"
        f"!! WARNING: PKI PRIVATE KEYS WERE WRITTEN UNENCRYPTED to {store.directory}\n"
        "!! auth.dev_keys is true and no passphrase was given: for development only.\n"
        "!! A real node: ZHIDA_AUTH__DEV_KEYS=false and ZHIDA_PKI_PASSPHRASE_FILE=<secret file>\n"
        "!! (or --passphrase-file); see 'zhida pki init --help'.\n"
        f"{rule}",
        file=sys.stderr,
    )


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":")


def _read_crls(path: Path) -> list[x509.CertificateRevocationList]:
    """PEM CRLs, or the CRLs of a trust bundle (``zhida pki export-trust``)."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"{"):
        return list(TrustBundle.from_json(data).crls)
    marker = b"-----BEGIN X509 CRL-----"
    try:
        return [x509.load_pem_x509_crl(marker + part) for part in data.split(marker)[1:]]
    except ValueError as exc:
        raise InvalidArgument(f"{path}: unreadable CRL: {exc}", reason="INVALID_CRL") from None


def _read_root(path: Path) -> tuple[x509.Certificate, list[x509.Certificate], list[Any]]:
    """(root, intermediates, CRLs) from a PEM root certificate or a trust bundle file."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"{"):
        bundle = TrustBundle.from_json(data)
        roots, intermediates, crls = list(bundle.roots), list(bundle.intermediates), bundle.crls
    else:
        roots, intermediates, crls = read_certificates(data, str(path)), [], ()
    if len(roots) != 1:
        raise InvalidArgument(
            f"{path} holds {len(roots)} root certificates: give the one deployment root",
            reason="INVALID_ROOT",
        )
    return roots[0], intermediates, list(crls)


def _serial(text: str) -> int:
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        return int(cleaned, 16)
    except ValueError:
        raise InvalidArgument(
            f"serial {text!r} is not hexadecimal", reason="INVALID_SERIAL"
        ) from None


def _purpose(text: str) -> SealPurpose:
    for purpose in SealPurpose:
        if text in (purpose.label, purpose.code, purpose.name, purpose.name.lower()):
            return purpose
    labels = ", ".join(p.label for p in SealPurpose)
    raise InvalidArgument(
        f"unknown seal purpose {text!r}; one of {labels}", reason="INVALID_PURPOSE"
    )


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _console() -> Console:
    # full serials (needed for `zhida pki revoke`) even when piped
    return Console(width=None if sys.stdout.isatty() else 200)


def cmd_init(args: argparse.Namespace) -> int:
    config = _config(args)
    store = _store(args, config)
    if args.csr is not None:
        if args.root_name:
            raise InvalidArgument("--root-name does not go with --csr: a child node has no root")
        level = Level[args.level.upper()] if args.level else None
        csr = Deployment.request_ca(config, level=level, ca_name=args.ca_name, key_store=store)
        pem = csr.public_bytes(Encoding.PEM)
        atomic_write(args.csr, pem, mode=0o644)
        asked = read_ca_csr(pem).level or Level.PROVINCE
        print(f"CA request  {csr.subject.rfc4514_string()}  written to {args.csr}")
        level_name = asked.name.lower()
        print(f"next, on the parent: zhida pki issue-sub-ca {args.csr.name} --level {level_name}")
        print("  --out CA.pem; then here: zhida pki import-ca CA.pem --root <its export-trust>")
        _warn_clear_keys(store)
        return 0
    if args.level:
        raise InvalidArgument("--level is for --csr: a root holder's CA is at the node's level")
    deployment = Deployment.init(
        config, root_name=args.root_name, ca_name=args.ca_name, key_store=store
    )
    root, ca = deployment.root_certificate, deployment.ca_certificate
    print(f"root CA     {root.subject.rfc4514_string()}  serial {root.serial_number:x}")
    print(f"issuing CA  {ca.subject.rfc4514_string()}  serial {ca.serial_number:x}")
    print(f"root SHA-256 {_fingerprint(root)}")
    print(f"keys in {store.directory}, state in {deployment.files.dir}")
    _warn_clear_keys(store)
    return 0


def cmd_issue_sub_ca(args: argparse.Namespace) -> int:
    deployment = _open(args)
    certs = deployment.issue_sub_ca(
        args.csr.read_bytes(),
        Level[args.level.upper()],
        validity=timedelta(days=args.valid_days),
    )
    atomic_write(args.out, b"".join(c.public_bytes(Encoding.PEM) for c in certs), mode=0o644)
    cert = certs[0]
    print(f"issued {args.level} CA {cert.subject.rfc4514_string()}  serial {cert.serial_number:x}")
    print(f"valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}")
    print(f"wrote {args.out}: the CA certificate and {len(certs) - 1} CA(s) above it")
    print(f"root SHA-256 {_fingerprint(deployment.root_certificate)}  (the child checks it)")
    return 0


def cmd_import_ca(args: argparse.Namespace) -> int:
    config = _config(args)
    root, intermediates, crls = _read_root(args.root)
    certs = read_certificates(args.certificate.read_bytes(), str(args.certificate))
    for path in args.chain:
        intermediates += read_certificates(path.read_bytes(), str(path))
    deployment = Deployment.import_ca(
        config,
        certs,
        root=root,
        intermediates=intermediates,
        crls=crls,
        key_store=_store(args, config),
    )
    ca = deployment.ca_certificate
    print(f"issuing CA  {ca.subject.rfc4514_string()}  serial {ca.serial_number:x}")
    print(f"chains to root {root.subject.rfc4514_string()}")
    print(f"root SHA-256 {_fingerprint(root)}  (compare with the root holder's)")
    upstream = len(deployment.crls(refresh=False)) - 1
    if upstream < len(deployment.ca_chain):
        print(
            "note: a CRL of the CAs above this one is missing: verifiers refuse its "
            "signatures until 'zhida pki import-crls <parent's export-trust file>'",
            file=sys.stderr,
        )
    return 0


def cmd_import_crls(args: argparse.Namespace) -> int:
    deployment = _open(args)
    crls = [crl for path in args.files for crl in _read_crls(path)]
    accepted = deployment.import_crls(crls)
    for crl in accepted:
        print(f"CRL of {crl.issuer.rfc4514_string()}  next update {crl.next_update_utc:%Y-%m-%d}")
    print(f"kept {len(accepted)} of {len(crls)} CRLs (the rest: not newer, or other CAs')")
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    deployment = _open(args)
    dept = deployment.issue_department_cert(
        args.name, args.uscc, algorithm=args.alg, validity=timedelta(days=args.valid_days)
    )
    earlier = [
        d.key_id
        for d in deployment.departments()
        if d.uscc == dept.uscc and d.key_id != dept.key_id
    ]
    cert = dept.certificate
    print(f"issued {dept.name} ({dept.uscc}) serial {dept.serial:x} key {dept.key_id}")
    print(f"valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}")
    if earlier:
        print(f"retired the previous keys: {', '.join(earlier)}")
        print(f"next: 'zhida seal create --dept-uscc {dept.uscc}' (the old seal is not bound)")
    if isinstance(deployment.key_store, FileKeyStore):
        _warn_clear_keys(deployment.key_store)
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    crl = _open(args).revoke(_serial(args.serial), args.reason)
    print(f"revoked {_serial(args.serial):x} ({args.reason}); CRL now lists {len(crl)} entries")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    bundle = _open(args).export_trust(args.file)
    print(
        f"wrote {args.file}: {len(bundle.trust.roots)} root, "
        f"{len(bundle.trust.intermediates)} intermediate, {len(bundle.trust.crls)} CRLs, "
        f"{len(bundle.seals)} seals"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    deployment = _open(args)
    revoked = deployment.revoked_serials()
    now = datetime.now(UTC)
    table = Table(title=f"PKI of {deployment.config.node.name}")
    for column in ("kind", "name", "USCC", "serial", "valid until", "status", "key"):
        table.add_column(column)
    root = "root" if deployment.holds_root else "root (key elsewhere)"
    cas = [(root, deployment.root_certificate), ("CA", deployment.ca_certificate)]
    cas += [("CA above", c) for c in deployment.ca_chain[1:]]
    cas += [("child CA", c) for c in deployment.sub_ca_certificates()]
    for kind, cert in cas:
        status = "revoked" if cert.serial_number in revoked else "valid"
        table.add_row(
            kind, _cn(cert), "", f"{cert.serial_number:x}",
            f"{cert.not_valid_after_utc:%Y-%m-%d}", status, "",
        )  # fmt: skip
    for dept in deployment.departments():
        cert = dept.certificate
        if dept.serial in revoked:
            status = f"revoked ({revoked[dept.serial].reason})"
        elif cert.not_valid_after_utc < now:
            status = "expired"
        else:
            status = "valid"
        table.add_row(
            "department", dept.name, dept.uscc, f"{dept.serial:x}",
            f"{cert.not_valid_after_utc:%Y-%m-%d}", status, dept.key_id,
        )  # fmt: skip
    _console().print(table)
    return 0


def cmd_seal_create(args: argparse.Namespace) -> int:
    seal = _open(args).create_seal(
        args.dept_uscc, purpose=_purpose(args.purpose), valid_days=args.valid_days, name=args.name
    )
    print(f"seal {seal.seal_id}: {seal.name}")
    print(f"valid {seal.valid_from:%Y-%m-%d} to {seal.valid_until:%Y-%m-%d}")
    return 0


def cmd_seal_list(args: argparse.Namespace) -> int:
    deployment = _open(args)
    revocations = deployment.seal_revocations()
    now = datetime.now(UTC)
    table = Table(title="electronic seals")
    for column in ("seal id", "name", "owner USCC", "valid from", "valid until", "status"):
        table.add_column(column)
    for seal in deployment.seals():
        hit = revocations.get(seal.seal_id)
        if hit is not None:
            status = f"revoked {hit[0]:%Y-%m-%d} ({hit[1]})"
        elif not seal.valid_from <= now <= seal.valid_until:
            status = "not valid now"
        else:
            status = "valid"
        table.add_row(
            seal.seal_id, seal.name, seal.owner_uscc, f"{seal.valid_from:%Y-%m-%d}",
            f"{seal.valid_until:%Y-%m-%d}", status,
        )  # fmt: skip
    _console().print(table)
    return 0


def cmd_seal_revoke(args: argparse.Namespace) -> int:
    _open(args).revoke_seal(args.seal_id, args.reason)
    print(f"seal {args.seal_id} revoked: {args.reason}")
    return 0
