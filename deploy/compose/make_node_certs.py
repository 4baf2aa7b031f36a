"""Create the federation's node certificates for the compose example (run once).

One root CA and one CA per level below it, then a node certificate per region
from the CA of its level (the national node's from the root), written as
``<out>/<region>/node.crt`` (leaf + CAs), ``node.key`` and ``ca.crt`` — the
files ``[federation] tls_cert / tls_key / tls_ca`` name. The CA keys stay in
``<out>/ca/`` so more nodes can be added later. Existing files are kept.

Example::

    python deploy/compose/make_node_certs.py ./pki 100000 420000 420100 420102
"""

from __future__ import annotations

import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from signing.node_certs import issue_node_cert
from signing.pki import CertificateAuthority, create_intermediate_ca, create_root_ca
from zhida.files import atomic_write
from zhida.regions import Level, parse_region

_NAMES = {
    Level.NATIONAL: "zhida 联邦根CA",
    Level.PROVINCE: "zhida 省级节点CA",
    Level.CITY: "zhida 市级节点CA",
    Level.COUNTY: "zhida 县级节点CA",
}


def _ca(out: Path, level: Level, parent: CertificateAuthority | None) -> CertificateAuthority:
    cert_file, key_file = out / f"{level.name.lower()}.crt", out / f"{level.name.lower()}.key"
    if cert_file.exists():
        stored = load_pem_private_key(key_file.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        return CertificateAuthority(cert, stored, level)  # type: ignore[arg-type]
    if parent is None:
        ca = create_root_ca(_NAMES[level], level=level)
    else:
        ca = create_intermediate_ca(parent, _NAMES[level], level)
    key: CertificateIssuerPrivateKeyTypes = ca.private_key
    atomic_write(key_file, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    atomic_write(cert_file, ca.certificate.public_bytes(Encoding.PEM), mode=0o644)
    return ca


def make(out: Path, regions: list[str], dns_names: dict[str, list[str]] | None = None) -> None:
    """Write the CAs under ``out/ca`` and one directory of TLS files per region."""
    cas: dict[Level, CertificateAuthority] = {}
    parent: CertificateAuthority | None = None
    for level in Level:
        parent = cas[level] = _ca(out / "ca", level, parent)
    root = cas[Level.NATIONAL]
    for code in regions:
        level = parse_region(code).level
        if (out / code / "node.crt").exists():
            continue
        chain = tuple(cas[lv].certificate for lv in reversed(Level) if Level.NATIONAL < lv <= level)
        names = (dns_names or {}).get(code, ["localhost"])
        creds = issue_node_cert(
            cas[level], code, root=root.certificate, chain=chain, dns_names=names
        )
        creds.write(out / code)
        print(f"{code}: {out / code}/node.crt ({level.name.lower()})")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    # in compose the nodes reach each other by service name
    services = {"100000": "national", "420000": "province", "420100": "city", "420102": "county"}
    out = Path(argv[0])
    make(out, argv[1:], {c: [services.get(c, "localhost"), "localhost"] for c in argv[1:]})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
