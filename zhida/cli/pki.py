"""``zhida pki`` and ``zhida seal``: the node's signing PKI and electronic seals.

Keys live in ``<data_dir>/keys/pki``, encrypted with the passphrase from
``ZHIDA_PKI_PASSPHRASE`` or the file named by ``ZHIDA_PKI_PASSPHRASE_FILE`` /
``--passphrase-file`` (unencrypted only with ``auth.dev_keys = true``, with a
warning). State is in ``<data_dir>/pki`` (see :mod:`signing.deployment`).

Example::

    $ export ZHIDA_PKI_PASSPHRASE=...            # or --passphrase-file /run/secrets/pki
    $ zhida pki init
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
from cryptography.x509.oid import NameOID
from rich.console import Console
from rich.table import Table

from signing.deployment import Deployment
from signing.seal import SealPurpose
from zhida.config import Config, load_config
from zhida.errors import InvalidArgument

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


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help="file holding the key store passphrase (default: $ZHIDA_PKI_PASSPHRASE_FILE, "
        "or the passphrase in $ZHIDA_PKI_PASSPHRASE)",
    )

    pki = subparsers.add_parser("pki", help="the signing PKI: CAs, department certificates")
    sub = pki.add_subparsers(dest="pki_command", metavar="SUBCOMMAND", title="subcommands")
    sub.required = True

    init = sub.add_parser("init", parents=[common], help="create the root and issuing CA")
    init.add_argument("--root-name", help="root CA name (default: zhida 部署根CA <node>)")
    init.add_argument("--ca-name", help="issuing CA name")
    init.set_defaults(handler=cmd_init)

    issue = sub.add_parser(
        "issue-dept-cert", parents=[common], help="key + signing certificate for a department"
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
    deployment = Deployment.init(
        _config(args),
        root_name=args.root_name,
        ca_name=args.ca_name,
        passphrase_file=args.passphrase_file,
    )
    root, ca = deployment.root_certificate, deployment.ca_certificate
    print(f"root CA     {root.subject.rfc4514_string()}  serial {root.serial_number:x}")
    print(f"issuing CA  {ca.subject.rfc4514_string()}  serial {ca.serial_number:x}")
    print(f"keys in {deployment.key_store.directory}, state in {deployment.files.dir}")
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    deployment = _open(args)
    dept = deployment.issue_department_cert(
        args.name, args.uscc, algorithm=args.alg, validity=timedelta(days=args.valid_days)
    )
    cert = dept.certificate
    print(f"issued {dept.name} ({dept.uscc}) serial {dept.serial:x} key {dept.key_id}")
    print(f"valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}")
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
    for kind, cert in (("root", deployment.root_certificate), ("CA", deployment.ca_certificate)):
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
