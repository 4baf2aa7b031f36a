"""The mutual-TLS federation port on an in-process aio server: who gets in, as whom, how fast."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from exchange.federation.transport import (
    NODE_PRINCIPAL_ISSUER,
    PeerAuthenticator,
    add_federation_port,
    load_node_credentials,
    node_verifier,
    open_neighbour_channel,
)
from signing.node_certs import NodeAuthError
from tests.unit.exchange.federation.support import CITY, COUNTY, FederationPki
from zhida.auth.principal import Principal, Role
from zhida.config import Config, load_config
from zhida.errors import ConfigError, Unauthenticated
from zhida.server.context import current_principal
from zhida.server.interceptor import ZhidaInterceptor

WHOAMI = "/test.Svc/WhoAmI"


def _whoami(channel: grpc.aio.Channel) -> Any:
    return channel.unary_unary(WHOAMI, None, None)  # raw bytes both ways


def node_config(tmp_path: Path, pki: FederationPki, region: str, **env: str) -> Config:
    """A node of ``region`` whose TLS files are in ``<data_dir>/pki`` (the defaults)."""
    data = tmp_path / region
    pki.node(region).write(data / "pki")
    return load_config(
        None,
        env={
            "ZHIDA_NODE__DATA_DIR": str(data),
            "ZHIDA_NODE__REGION_CODE": region,
            "ZHIDA_FEDERATION__LISTEN": "127.0.0.1:0",
            **env,
        },
    )


class NoTokens:
    def verify(self, token: str | None) -> Principal:
        raise Unauthenticated("no bearer tokens here", reason="TOKEN_MISSING")


async def whoami(request: bytes, context: Any) -> bytes:
    who = current_principal()
    return f"{who.subject}|{who.role.claim}|{who.region_code}|{who.issuer}".encode()


async def serving(config: Config, body: Callable[[str, str], Awaitable[None]]) -> None:
    """Run ``body(plain_address, mtls_address)`` against a server with both ports."""
    peers = PeerAuthenticator(node_verifier(load_node_credentials(config)))
    interceptor = ZhidaInterceptor(
        NoTokens(), authorize=lambda m, p: None, is_public=lambda m: False, node_auth=peers
    )
    server = grpc.aio.server(interceptors=[interceptor])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Svc", {"WhoAmI": grpc.unary_unary_rpc_method_handler(whoami)}
            ),
        )
    )
    plain = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    mtls = add_federation_port(server, config)
    await server.start()
    try:
        await body(plain, mtls)
    finally:
        await server.stop(0)


def test_a_neighbour_is_the_node_its_certificate_names(
    tmp_path: Path, pki: FederationPki, foreign: FederationPki
) -> None:
    city = node_config(tmp_path, pki, CITY)
    county = node_config(tmp_path, pki, COUNTY)
    stranger = node_config(tmp_path / "b", foreign, COUNTY)

    async def body(plain: str, mtls: str) -> None:
        assert mtls.startswith("127.0.0.1:")
        assert not mtls.endswith(":0")
        async with open_neighbour_channel(county, mtls) as channel:
            reply = await _whoami(channel)(b"", timeout=10)
        assert reply.decode() == f"node:{COUNTY}|node|{COUNTY}|{NODE_PRINCIPAL_ISSUER}"
        # the plaintext port still wants a bearer token
        async with grpc.aio.insecure_channel(plain) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _whoami(channel)(b"", timeout=10)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        # another deployment's node: the handshake fails
        async with open_neighbour_channel(stranger, mtls) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _whoami(channel)(b"", timeout=10)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE

    asyncio.run(serving(city, body))


def test_a_silent_neighbour_costs_the_connect_timeout_not_the_deadline(
    tmp_path: Path, pki: FederationPki
) -> None:
    county = node_config(tmp_path, pki, COUNTY)
    silent = socket.socket()  # accepts TCP (the kernel does) but never answers TLS
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)

    async def call() -> float:
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        async with open_neighbour_channel(county, address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await _whoami(channel)(b"", timeout=20)
        assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
        return time.monotonic() - started

    try:
        assert asyncio.run(call()) < 5.0  # connect timeout 1 s (+ scheduling), not 20 s
    finally:
        silent.close()


def test_node_credentials_must_exist_and_match_the_node(tmp_path: Path, pki: FederationPki) -> None:
    missing = load_config(None, env={"ZHIDA_NODE__DATA_DIR": str(tmp_path / "none")})
    with pytest.raises(ConfigError) as error:
        load_node_credentials(missing)
    assert error.value.key == "federation.tls_cert"
    pki.node(CITY).write(tmp_path / "wrong" / "pki")
    wrong = load_config(
        None,
        env={"ZHIDA_NODE__DATA_DIR": str(tmp_path / "wrong"), "ZHIDA_NODE__REGION_CODE": COUNTY},
    )
    with pytest.raises(ConfigError) as error:
        load_node_credentials(wrong)
    assert "420100" in error.value.message


def test_peer_authenticator(pki: FederationPki, foreign: FederationPki) -> None:
    peers = PeerAuthenticator(pki.verifier())
    assert peers.lookup({"transport_security_type": [b"insecure"]}) is None
    with pytest.raises(NodeAuthError):
        peers.lookup({"transport_security_type": [b"ssl"]})
    county = pki.node(COUNTY)
    leaf, *cas = county.chain_pem().split(b"-----END CERTIFICATE-----\n")[:-1]
    auth = {
        "transport_security_type": [b"ssl"],
        "x509_pem_cert": [leaf + b"-----END CERTIFICATE-----\n"],
        "x509_pem_cert_chain": [c + b"-----END CERTIFICATE-----\n" for c in cas],
    }
    found = peers.lookup(auth)
    assert found is not None
    identity, principal = found
    assert (identity.region_code, principal.role, principal.subject) == (
        COUNTY, Role.NODE, f"node:{COUNTY}",
    )  # fmt: skip
    assert peers.lookup(auth) == found  # cached
    stranger = foreign.node(COUNTY).chain_pem()
    with pytest.raises(NodeAuthError):
        peers.lookup({"transport_security_type": [b"ssl"], "x509_pem_cert": [stranger]})
