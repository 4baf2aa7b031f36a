"""``zhida verify FILE``: check a licence JWS or signed licence PDF.

With ``--trust bundle.json`` (from ``zhida pki export-trust``) it works
offline, with nothing but that file; without it, against this node's own
PKI and seals (files only: no passphrase needed). Prints ``valid`` with the
issuer, seal and signing time and exits 0, or ``invalid: <REASON>: <why>``
and exits 1 — also when the file or the trust bundle cannot be read
(``invalid: MALFORMED: …``); exit 2 is only for a wrong command line.

A licence — a JWS, or a PDF the vault sealed, which carries the same claims
under its signature (:func:`licence_vault.verify.pdf_licence_claims`) — is
also checked against its validity period (``EXPIRED``, ``NOT_YET_VALID``:
always, with or without a status list; an annotated copy also against the
time its use ends, ``ANNOTATION_EXPIRED``) and its reference into the issuer's
Token Status List: the list cached by ``zhida licence verify``
(``--status-cache``) is checked too, so a revoked or suspended licence is
invalid; with no cached list the status line says so (``--require-status``
makes that invalid).

Example::

    $ zhida verify licence.pdf --trust trust.json
    valid
      issuer:    武汉市市场监督管理局 (11420100MB00000009)
      seal:      武汉市市场监督管理局电子证照专用章 [84b8a9b1…] valid to 2028-11-21
      signed at: 2025-11-22T03:02:15+00:00
      document:  PDF
    $ zhida verify tampered.pdf --trust trust.json
    invalid: BAD_SIGNATURE: the signed bytes of the PDF changed: ...
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from licence_vault.days import licence_today
from licence_vault.offline import cached_status_token, file_verifier
from licence_vault.status_list import parse_status_claim
from licence_vault.verify import (
    Verification,
    check_annotation,
    check_period,
    pdf_licence_claims,
)
from signing.bundle import VerifierBundle
from signing.seal import SealRegistry
from signing.verify import VerificationResult, verify_document
from zhida.config import load_config
from zhida.errors import InvalidArgument, ZhidaError

MALFORMED = "MALFORMED"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "verify", help="verify a licence (JWS or signed PDF); exit 0 valid, 1 invalid"
    )
    parser.add_argument("file", help="the licence file, or - for standard input")
    parser.add_argument(
        "--trust", type=Path, metavar="BUNDLE", help="trust bundle from `zhida pki export-trust`"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--status-cache",
        type=Path,
        metavar="DIR",
        help="status lists kept by `zhida licence verify` (default: <data_dir>/status-list-cache)",
    )
    parser.add_argument(
        "--require-status",
        action="store_true",
        help="a licence whose status list is not cached is invalid (default: valid, with a note)",
    )
    parser.set_defaults(handler=cmd_verify)


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {name}: {exc.strerror}", reason=MALFORMED) from None


def _bundle(args: argparse.Namespace) -> tuple[VerifierBundle, SealRegistry]:
    if args.trust is not None:
        try:
            bundle = VerifierBundle.from_json(args.trust.read_bytes())
            return bundle, bundle.registry()
        except OSError as exc:
            why = str(exc.strerror)
        except ZhidaError as exc:
            why = exc.message
        raise InvalidArgument(
            f"cannot read trust bundle {args.trust}: {why}", reason=MALFORMED
        ) from None
    from signing.deployment import Deployment  # the local PKI only when no bundle is given

    config = load_config(Path(args.config) if getattr(args, "config", None) else None)
    bundle = Deployment.open(config).verifier_bundle(refresh_crls=False)
    return bundle, bundle.registry()


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        data = _read(args.file)
        bundle, registry = _bundle(args)
    except ZhidaError as exc:  # nothing to verify with: invalid, not a usage error
        failed = Verification(False, exc.reason, exc.message)
        print(_status_json(failed) if args.json else f"invalid: {exc.reason}: {exc.message}")
        return 1
    result = verify_document(data, bundle.trust, registry)
    status = _licence_status(args, data, bundle, result) if result.valid else None
    if status is not None and not status.valid and status.reason != _NOT_CACHED:
        # signature, chain and seal are fine, but the licence has lapsed or the issuer
        # has revoked or suspended it
        print(_status_json(status) if args.json else f"invalid: {status.reason}: {status.message}")
        return 1
    if args.json:
        doc = json.loads(_as_json(result))
        if status is not None:
            doc["status"] = json.loads(_status_json(status))
        print(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        print(_as_text(result))
        if status is not None:
            print(f"  status:    {_status_line(status)}")
    if not result.valid:
        return 1
    unchecked = status is not None and not status.valid
    return 1 if unchecked and args.require_status else 0


# -- the licence's current status, from a cached Token Status List --------------------------
_NOT_CACHED = "STATUS_NOT_CACHED"


def _status_cache(args: argparse.Namespace) -> Path | None:
    if args.status_cache is not None:
        return Path(args.status_cache)
    try:
        config = load_config(Path(args.config) if getattr(args, "config", None) else None)
    except ZhidaError:
        return None
    return config.node.data_dir / "status-list-cache"


def _now() -> datetime:
    return datetime.now(UTC)


def _licence_status(
    args: argparse.Namespace, data: bytes, bundle: VerifierBundle, result: VerificationResult
) -> Verification | None:
    """The licence verdict of a verified document: validity period, then the cached
    status list. None for a document that is not a licence (no period, no status)."""
    claims = result.payload if result.kind == "jws" else pdf_licence_claims(data)
    if claims is None or not ({"status", "有效期截止日期"} & claims.keys()):
        return None
    today = licence_today()  # the vault's day: validity periods are judged in Beijing time
    outside = check_period(claims, today)
    if outside is None:  # an annotated copy (加注件) may be used only until its time
        outside = check_annotation(claims, _now())
    if outside is not None:  # whatever the status list says (or whether there is one)
        return Verification(False, *outside)
    if "status" not in claims:
        return None
    try:
        _, uri = parse_status_claim(claims)
    except ZhidaError as exc:
        return Verification(False, exc.reason, exc.message)
    cache = _status_cache(args)
    if cache is None or cached_status_token(cache, uri) is None:
        where = f" in {cache}" if cache is not None else ""
        return Verification(
            False,
            _NOT_CACHED,
            f"not checked: no cached status list for {uri}{where} "
            "(`zhida licence verify` fetches one from the vault)",
        )
    assert result.department is not None  # a valid result names its signer
    assert result.signed_at is not None
    seal_id = result.seal.seal_id if result.seal is not None else ""
    verifier = file_verifier(bundle, cache)
    return verifier.check_claims(claims, result.department, seal_id, result.signed_at, today)


def _status_line(status: Verification) -> str:
    if status.valid:
        return "valid (from the issuer's cached, signed status list)"
    return status.message


def _status_json(status: Verification) -> str:
    doc = {"valid": status.valid, "reason": status.reason or "VALID", "message": status.message}
    return json.dumps(doc, ensure_ascii=False)


def _as_text(result: VerificationResult) -> str:
    if not result.valid:
        return f"invalid: {result.reason}: {result.message}"
    assert result.department is not None
    assert result.seal is not None
    assert result.signed_at is not None
    lines = [
        "valid",
        f"  issuer:    {result.department.name} ({result.department.uscc})",
        f"  seal:      {result.seal.name} [{result.seal.seal_id}] "
        f"valid to {result.seal.valid_until:%Y-%m-%d}",
        f"  signed at: {result.signed_at.isoformat()}",
        f"  document:  {result.kind.upper()}",
    ]
    if result.payload is not None:
        lines.append(f"  licence:   {json.dumps(result.payload, ensure_ascii=False)[:200]}")
    return "\n".join(lines)


def _as_json(result: VerificationResult) -> str:
    doc: dict[str, Any] = {"valid": result.valid, "kind": result.kind, "reason": result.reason}
    if not result.valid:
        doc["message"] = result.message
    else:
        assert result.department is not None
        assert result.seal is not None
        assert result.signed_at is not None
        doc.update(
            issuer={"name": result.department.name, "uscc": result.department.uscc},
            seal={"id": result.seal.seal_id, "name": result.seal.name},
            signed_at=result.signed_at.isoformat(),
            payload=result.payload,
        )
    return json.dumps(doc, ensure_ascii=False, indent=2)
