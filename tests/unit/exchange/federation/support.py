"""A federation PKI for tests: one root, a CA per level, node credentials on demand.

``FederationPki.create("A")`` builds root → 湖北 province CA → 武汉 city CA →
江岸区 county CA; :meth:`FederationPki.node` issues a node certificate from
the CA of the node's level (the root for the national node). Two instances
are two unrelated deployments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509

from signing.node_certs import NodeCredentials, NodeVerifier, issue_node_cert
from signing.pki import CertificateAuthority, create_intermediate_ca, create_root_ca
from zhida.regions import Level, parse_region

NATIONAL, PROVINCE, CITY, COUNTY = "100000", "420000", "420100", "420102"


@dataclass
class FederationPki:
    root: CertificateAuthority
    cas: dict[Level, CertificateAuthority]
    issued_at: datetime | None = None
    _nodes: dict[str, NodeCredentials] = field(default_factory=dict)

    @classmethod
    def create(cls, label: str = "A", *, now: datetime | None = None) -> FederationPki:
        # Issue a day early: test modules take their "now" at import, which in a
        # long suite can be minutes before a session fixture issues the certs.
        now = now or datetime.now(UTC) - timedelta(days=1)
        root = create_root_ca(f"zhida 联邦根CA {label}", now=now)
        province = create_intermediate_ca(
            root, f"湖北省政务服务CA {label}", Level.PROVINCE, now=now
        )
        city = create_intermediate_ca(province, f"武汉市政务服务CA {label}", Level.CITY, now=now)
        county = create_intermediate_ca(city, f"江岸区政务服务CA {label}", Level.COUNTY, now=now)
        cas = {
            Level.NATIONAL: root,
            Level.PROVINCE: province,
            Level.CITY: city,
            Level.COUNTY: county,
        }
        return cls(root, cas, now)

    def chain_for(self, level: Level) -> tuple[x509.Certificate, ...]:
        """The CAs between a node of ``level`` and the root, nearest first."""
        return tuple(self.cas[lv].certificate for lv in Level if Level.NATIONAL < lv <= level)[::-1]

    def node(self, region_code: str, **kwargs: object) -> NodeCredentials:
        """The node certificate of ``region_code`` (cached unless kwargs are given)."""
        if region_code in self._nodes and not kwargs:
            return self._nodes[region_code]
        level = parse_region(region_code).level
        creds = issue_node_cert(
            self.cas[level],
            region_code,
            root=self.root.certificate,
            chain=self.chain_for(level),
            **({"now": self.issued_at} | kwargs),  # type: ignore[arg-type]
        )
        if not kwargs:
            self._nodes[region_code] = creds
        return creds

    def verifier(self, **kwargs: object) -> NodeVerifier:
        return NodeVerifier([self.root.certificate], **kwargs)  # type: ignore[arg-type]
