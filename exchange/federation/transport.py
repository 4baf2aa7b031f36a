"""Mutual TLS between federation nodes: the node's port, channels to neighbours, the peer (issue 8).

A node that takes part in the federation has a second listener,
``[federation] listen``, served with :func:`federation_server_credentials`:
TLS with ``require_client_auth=True`` against this deployment's root
(``tls_ca``), presenting the node's own chain (``tls_cert`` + ``tls_key``,
from :mod:`signing.node_certs`). A client without a certificate, or with one
from another deployment, fails the handshake: its call never reaches the
interceptor, let alone a handler. The plaintext + bearer port (``node.listen``)
is unchanged; both ports serve the same services.

On the mTLS port the caller is the neighbour node, never a bearer token:
:class:`PeerAuthenticator` (the interceptor's ``node_auth`` hook) verifies
the presented chain once more with :class:`~signing.node_certs.NodeVerifier`
(EKUs, subject format, CA level, CRLs) and turns it into a
:class:`~zhida.auth.principal.Principal` with role ``node``, subject
``node:<region>``, the node name as organisation and the region code.
Verified peers are cached by certificate for ``cache_seconds``.

:func:`open_neighbour_channel` opens a ``grpc.aio`` channel to a neighbour
with the node's own client certificate. Its options bound the time a dead or
black-holed neighbour can cost: a connection attempt gives up after
``connect_timeout_ms`` (1 s) and reconnection backs off between 0.2 and 2 s,
so a call to a neighbour that is down fails UNAVAILABLE at once (refused) or
within the connect timeout (silent), well inside any sensible deadline, and
a neighbour that comes back is used again within ~2 s.

Example::

    from exchange.federation.transport import (
        federation_server_credentials, open_neighbour_channel, PeerAuthenticator,
        load_node_credentials, node_verifier)

    server.add_secure_port(config.federation.listen, federation_server_credentials(config))
    channel = open_neighbour_channel(config, config.federation.parent)
    stub = FederationServiceStub(channel)
    peers = PeerAuthenticator(node_verifier(load_node_credentials(config)))
    principal = peers(context)      # in a handler: Principal(role=NODE, subject="node:420102", …)
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from cryptography import x509

from signing.errors import Failure
from signing.node_certs import (
    NodeAuthError,
    NodeCredentials,
    NodeIdentity,
    NodeTlsFiles,
    NodeVerifier,
)
from zhida.auth.principal import Principal, Role
from zhida.config import Config
from zhida.errors import ConfigError, InvalidArgument

__all__ = [
    "CONNECT_TIMEOUT_MS",
    "NODE_PRINCIPAL_ISSUER",
    "PeerAuthenticator",
    "add_federation_port",
    "channel_options",
    "federation_server_credentials",
    "load_node_credentials",
    "node_principal",
    "node_verifier",
    "open_neighbour_channel",
]

CONNECT_TIMEOUT_MS = 1_000
INITIAL_BACKOFF_MS = 200
MAX_BACKOFF_MS = 2_000
NODE_PRINCIPAL_ISSUER = "zhida-node-mtls"
"""``Principal.issuer`` of a caller authenticated by its node certificate."""

_CACHE_SIZE = 256
_credentials_cache: dict[tuple[str, str, str, float, float, float], NodeCredentials] = {}
_credentials_lock = threading.Lock()


def load_node_credentials(config: Config) -> NodeCredentials:
    """The node's key, chain and root from ``[federation] tls_cert / tls_key / tls_ca``.

    ConfigError naming ``federation.tls_cert`` when the files are missing,
    unreadable, do not fit together, or name another region than
    ``node.region_code``. Cached per file set and modification time.
    """
    fed = config.federation
    files = NodeTlsFiles(fed.tls_cert, fed.tls_key, fed.tls_ca)
    try:
        stamp = (
            str(files.cert),
            str(files.key),
            str(files.ca),
            files.cert.stat().st_mtime,
            files.key.stat().st_mtime,
            files.ca.stat().st_mtime,
        )
    except OSError as exc:
        raise ConfigError("federation.tls_cert", f"node TLS files: {exc}") from None
    with _credentials_lock:
        cached = _credentials_cache.get(stamp)
    if cached is not None:
        return cached
    try:
        credentials = files.load()
        identity = credentials.identity
    except (ValueError, InvalidArgument, IndexError) as exc:
        message = exc.message if isinstance(exc, InvalidArgument) else str(exc)
        raise ConfigError("federation.tls_cert", f"unusable node TLS files: {message}") from None
    if identity.region_code != config.node.region_code:
        raise ConfigError(
            "federation.tls_cert",
            f"the node certificate is for region {identity.region_code}, "
            f"this node is {config.node.region_code}",
        )
    with _credentials_lock:
        _credentials_cache[stamp] = credentials
    return credentials


def node_verifier(credentials: NodeCredentials) -> NodeVerifier:
    """A verifier of peer node certificates against ``credentials``' root.

    The node's own CAs are given as intermediates, so a peer may send its leaf alone.
    """
    return NodeVerifier([credentials.root], intermediates=credentials.chain)


def federation_server_credentials(config: Config) -> grpc.ServerCredentials:
    """TLS for ``[federation] listen``: the node's chain; peers must present a cert
    from this deployment's root (``require_client_auth=True``)."""
    return load_node_credentials(config).server_credentials()


def channel_options(
    config: Config, *, connect_timeout_ms: int = CONNECT_TIMEOUT_MS, server_name: str | None = None
) -> list[tuple[str, Any]]:
    """Channel arguments for a neighbour channel (message limits, connect timeout, backoff)."""
    size = config.node.max_message_bytes
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", size),
        ("grpc.max_send_message_length", size),
        # gRPC core takes the minimum connect timeout from this argument
        ("grpc.min_reconnect_backoff_ms", connect_timeout_ms),
        ("grpc.initial_reconnect_backoff_ms", INITIAL_BACKOFF_MS),
        ("grpc.max_reconnect_backoff_ms", MAX_BACKOFF_MS),
        ("grpc.enable_retries", 0),  # the origin retries, with a fresh assertion each time
        ("grpc.use_local_subchannel_pool", 1),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options


def open_neighbour_channel(
    config: Config,
    address: str,
    *,
    server_name: str | None = None,
    connect_timeout_ms: int = CONNECT_TIMEOUT_MS,
) -> grpc.aio.Channel:
    """An mTLS ``grpc.aio`` channel to the neighbour at ``address`` (``host:port``).

    The neighbour must present a certificate from this deployment's root whose
    SAN names the host of ``address``; ``server_name`` overrides the name
    checked (e.g. a node reached through a tunnel or by an IP its certificate
    does not list). Open it inside the event loop that will use it.
    """
    credentials = load_node_credentials(config).channel_credentials()
    options = channel_options(
        config, connect_timeout_ms=connect_timeout_ms, server_name=server_name
    )
    return grpc.aio.secure_channel(address, credentials, options=options)


def node_principal(identity: NodeIdentity, *, expires_at: int) -> Principal:
    """The Principal of a neighbour node authenticated by its certificate."""
    return Principal(
        subject=f"node:{identity.region_code}",
        role=Role.NODE,
        organisation=identity.name,
        region_code=identity.region_code,
        expires_at=expires_at,
        token_id=identity.fingerprint,
        issuer=NODE_PRINCIPAL_ISSUER,
    )


class PeerAuthenticator:
    """The caller of an mTLS call, from its verified client certificate. Thread-safe.

    Called with a ``ServicerContext``: None for a call that did not arrive
    over TLS (the plaintext port: the interceptor then wants a bearer token),
    the node's Principal for a verified peer, NodeAuthError (UNAUTHENTICATED
    ``NODE_CERT_INVALID``) otherwise.
    """

    def __init__(
        self, verifier: NodeVerifier, *, cache_seconds: float = 60.0, clock: Any = time.monotonic
    ) -> None:
        self.verifier = verifier
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[float, NodeIdentity, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, context: Any) -> Principal | None:
        found = self.lookup(context.auth_context())
        return None if found is None else found[1]

    def identity(self, context: Any) -> NodeIdentity | None:
        """The verified peer node of the call, or None when it did not come over TLS."""
        found = self.lookup(context.auth_context())
        return None if found is None else found[0]

    def lookup(
        self, auth_context: Mapping[str, Iterable[bytes]]
    ) -> tuple[NodeIdentity, Principal] | None:
        """The verified peer of ``auth_context`` (see the class docstring)."""
        security = b"".join(auth_context.get("transport_security_type", ()))
        leaf_pem = b"".join(auth_context.get("x509_pem_cert", ()))
        if security != b"ssl" and not leaf_pem:
            return None
        if not leaf_pem:
            raise NodeAuthError(Failure.MALFORMED, "the peer presented no client certificate")
        now = self._clock()
        with self._lock:
            entry = self._cache.get(leaf_pem)
        if entry is not None and entry[0] > now:
            return entry[1], entry[2]
        identity = self.verifier.verify_auth_context(auth_context)
        try:
            not_after = x509.load_pem_x509_certificate(leaf_pem).not_valid_after_utc
        except ValueError as exc:  # verify_auth_context parsed it already: not expected
            raise NodeAuthError(Failure.MALFORMED, f"unreadable peer certificate: {exc}") from None
        principal = node_principal(identity, expires_at=int(not_after.timestamp()))
        valid_for = min(self._cache_seconds, not_after.timestamp() - time.time())
        with self._lock:
            self._cache[leaf_pem] = (now + valid_for, identity, principal)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return identity, principal


def add_federation_port(server: grpc.aio.Server, config: Config) -> str:
    """Bind ``[federation] listen`` on ``server`` with mTLS; the ``host:port`` bound.

    ``""`` when no federation listener is configured. ConfigError naming
    ``federation.listen`` when the address cannot be bound.
    """
    address = config.federation.listen
    if not address:
        return ""
    credentials = federation_server_credentials(config)
    try:
        port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise ConfigError("federation.listen", f"cannot listen on {address}: {exc}") from None
    if port == 0:
        raise ConfigError("federation.listen", f"cannot listen on {address}")
    return f"{address.rpartition(':')[0]}:{port}"
