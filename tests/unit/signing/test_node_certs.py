"""Node certificates: issuing, PEM files, the verifier, and real mutual TLS with grpc.aio."""

from __future__ import annotations

import asyncio
import dataclasses
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from signing.errors import Failure
from signing.node_certs import (
    NodeAuthError,
    NodeCredentials,
    NodeIdentity,
    NodeVerifier,
    ca_level,
    issue_node_cert,
    node_identity,
)
from signing.pki import create_crl, issue_department_cert
from tests.unit.exchange.federation.support import (
    CITY,
    COUNTY,
    NATIONAL,
    PROVINCE,
    FederationPki,
)
from zhida.errors import InvalidArgument
from zhida.regions import Level


@pytest.fixture(scope="module")
def pki() -> FederationPki:
    return FederationPki.create("A")


@pytest.fixture(scope="module")
def other() -> FederationPki:
    return FederationPki.create("B")


def test_node_certificate_contents(pki: FederationPki) -> None:
    creds = pki.node(CITY)
    cert = creds.certificate
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    identity = node_identity(cert)
    assert (identity.region_code, identity.level, identity.name) == (
        CITY,
        Level.CITY,
        "zhida-node-420100",
    )
    assert creds.identity == identity
    assert len(creds.x5c()) == 3  # leaf, city CA, province CA; never the root
    assert ca_level(pki.cas[Level.CITY].certificate) is Level.CITY
    assert ca_level(pki.root.certificate) is Level.NATIONAL


def test_custom_names_and_bad_input(pki: FederationPki) -> None:
    creds = pki.node(
        PROVINCE, name="湖北省交换节点", dns_names=["hubei.zhida.local"], ip_addresses=[]
    )
    san = creds.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["hubei.zhida.local"]
    assert creds.identity.name == "湖北省交换节点"
    root = pki.root.certificate
    with pytest.raises(InvalidArgument) as info:
        issue_node_cert(pki.cas[Level.COUNTY], PROVINCE, root=root)
    assert info.value.reason == "CA_LEVEL_TOO_LOW"
    with pytest.raises(InvalidArgument, match="six digits"):
        issue_node_cert(pki.root, "42", root=root)
    with pytest.raises(InvalidArgument) as info:
        issue_node_cert(pki.root, NATIONAL, root=root, ip_addresses=["not-an-ip"])
    assert info.value.reason == "INVALID_SAN"
    # a national node may also be issued by the province-level issuing CA
    assert pki.node(NATIONAL).identity.level is Level.NATIONAL
    issue_node_cert(pki.cas[Level.PROVINCE], NATIONAL, root=root)


def test_pem_files_round_trip(pki: FederationPki, tmp_path: Path) -> None:
    creds = pki.node(COUNTY)
    files = creds.write(tmp_path / "pki")
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert files.cert.read_bytes().count(b"BEGIN CERTIFICATE") == 4  # leaf + three CAs
    loaded = files.load()
    assert loaded.certificate == creds.certificate
    assert loaded.chain == creds.chain
    assert loaded.root == pki.root.certificate
    with pytest.raises(InvalidArgument) as info:
        NodeCredentials(pki.node(CITY).private_key, creds.certificate, creds.chain, creds.root)
    assert info.value.reason == "KEY_CERT_MISMATCH"


def test_verifier_accepts_own_nodes(pki: FederationPki) -> None:
    verifier = pki.verifier()
    for region, level in (
        (NATIONAL, Level.NATIONAL),
        (PROVINCE, Level.PROVINCE),
        (CITY, Level.CITY),
        (COUNTY, Level.COUNTY),
    ):
        creds = pki.node(region)
        identity = verifier.verify(creds.certificate, creds.chain)
        assert (identity.region_code, identity.level) == (region, level)
        assert verifier.verify_pem(creds.chain_pem()) == identity
    # a peer that presents only its leaf is verified with known intermediates
    leaf_only = NodeVerifier([pki.root.certificate], [ca.certificate for ca in pki.cas.values()])
    assert leaf_only.verify(pki.node(COUNTY).certificate).region_code == COUNTY


def _refusal(verifier: NodeVerifier, creds: NodeCredentials, **kwargs: object) -> NodeAuthError:
    with pytest.raises(NodeAuthError) as info:
        verifier.verify(creds.certificate, creds.chain, **kwargs)  # type: ignore[arg-type]
    assert info.value.reason == "NODE_CERT_INVALID"
    assert info.value.code.name == "UNAUTHENTICATED"
    return info.value


def test_verifier_refuses_foreign_expired_and_non_node_certs(
    pki: FederationPki, other: FederationPki
) -> None:
    verifier = pki.verifier()
    assert _refusal(verifier, other.node(PROVINCE)).failure is Failure.CHAIN_INVALID
    later = datetime.now(UTC) + timedelta(days=400)
    assert _refusal(verifier, pki.node(CITY), at=later).failure is Failure.CERT_EXPIRED
    # a department signing certificate is not a node certificate (EKU)
    dept_key = pki.node(CITY).private_key
    dept = issue_department_cert(
        pki.cas[Level.CITY], "武汉市市场监督管理局", "11420100MB00000009", dept_key.public_key()
    )
    forged = dataclasses.replace(pki.node(CITY), certificate=dept)
    assert _refusal(verifier, forged).failure is Failure.CHAIN_INVALID
    with pytest.raises(NodeAuthError) as info:
        verifier.verify_pem(b"-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n")
    assert info.value.failure is Failure.MALFORMED
    with pytest.raises(NodeAuthError, match="no client certificate"):
        verifier.verify_auth_context({"transport_security_type": [b"insecure"]})


def test_verifier_refuses_a_low_ca_vouching_for_a_higher_node(pki: FederationPki) -> None:
    # issue_node_cert refuses this; pretend the county CA were a province CA to get one
    disguised = dataclasses.replace(pki.cas[Level.COUNTY], level=Level.PROVINCE)
    chain = pki.chain_for(Level.COUNTY)
    creds = issue_node_cert(disguised, PROVINCE, root=pki.root.certificate, chain=chain)
    error = _refusal(pki.verifier(), creds)
    assert error.failure is Failure.CHAIN_INVALID
    assert "COUNTY CA may not vouch" in error.message


def test_verifier_checks_crls(pki: FederationPki) -> None:
    creds = pki.node(COUNTY, name="revoked county node")
    county_ca = pki.cas[Level.COUNTY]
    crl = create_crl(county_ca, [creds.certificate.serial_number])
    verifier = pki.verifier(crls=[crl])
    assert _refusal(verifier, creds).failure is Failure.CERT_REVOKED
    assert verifier.verify(pki.node(COUNTY).certificate, pki.node(COUNTY).chain).level is (
        Level.COUNTY
    )
    stale = create_crl(county_ca, [], now=datetime.now(UTC) - timedelta(days=30))
    stale_verifier = pki.verifier(crls=[stale])
    failure = _refusal(stale_verifier, pki.node(COUNTY)).failure
    assert failure is Failure.REVOCATION_UNAVAILABLE


# -- real mutual TLS ------------------------------------------------------------------


_METHOD = "/zhida.test.v1.NodeProbe/Who"


def _probe_handler(
    verifier: NodeVerifier, callers: list[NodeIdentity]
) -> grpc.GenericRpcHandler[bytes, bytes]:
    """One raw-bytes RPC that verifies the calling node and answers its region."""

    async def who(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        try:
            identity = verifier.verify_auth_context(context.auth_context())
        except NodeAuthError as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.reason)
        callers.append(identity)
        return identity.region_code.encode()

    return grpc.method_handlers_generic_handler(
        "zhida.test.v1.NodeProbe", {"Who": grpc.unary_unary_rpc_method_handler(who)}
    )


async def _call(port: int, creds: grpc.ChannelCredentials) -> grpc.StatusCode:
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        try:
            await channel.unary_unary(_METHOD, None, None)(b"", timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK


def test_mutual_tls_between_nodes(pki: FederationPki, other: FederationPki) -> None:
    async def scenario() -> tuple[list[grpc.StatusCode], list[NodeIdentity]]:
        callers: list[NodeIdentity] = []
        server = grpc.aio.server(handlers=[_probe_handler(pki.verifier(), callers)])
        port = server.add_secure_port("127.0.0.1:0", pki.node(PROVINCE).server_credentials())
        await server.start()
        try:
            no_client_cert = grpc.ssl_channel_credentials(
                root_certificates=pki.node(CITY).root_pem()
            )
            foreign_trusting_us = grpc.ssl_channel_credentials(
                root_certificates=pki.node(CITY).root_pem(),
                private_key=other.node(CITY).key_pem(),
                certificate_chain=other.node(CITY).chain_pem(),
            )
            codes = [
                await _call(port, pki.node(CITY).channel_credentials()),  # good node
                await _call(port, other.node(CITY).channel_credentials()),  # other deployment
                await _call(port, foreign_trusting_us),  # other deployment's cert, our root
                await _call(port, no_client_cert),  # no client certificate at all
            ]
        finally:
            await server.stop(0)
        return codes, callers

    codes, callers = asyncio.run(scenario())
    assert codes[0] is grpc.StatusCode.OK
    assert [c.region_code for c in callers] == [CITY]  # only the good node reached the handler
    assert all(code is grpc.StatusCode.UNAVAILABLE for code in codes[1:])  # refused in TLS
