"""What the forwarding paths of a node share (issue 8): its parts, the neighbour channels.

:class:`ForwardingBase` is the common base of the unary path
(:class:`~exchange.federation.forward_unary.UnaryForwarding`), the stream path
(:class:`~exchange.federation.forward_stream.StreamForwarding`) and the node
that combines them, :class:`~exchange.federation.forwarder.Federation`. It
declares the parts of the node both paths use (set up by ``Federation``), holds
the mTLS channels and ``FederationService`` stubs of the neighbours (opened on
first use, in the serving loop) and names the path a node ends a call with.

The wire names are here too: ``x-trace-id`` on every call to the next hop,
``x-zhida-path`` (the path of a call: a trailer, or the initial metadata of a
stream) and ``x-zhida-replayed`` (answered from the serving node's store).

Example::

    class UnaryForwarding(ForwardingBase):
        def _call(self, plan, envelope, trace_id):
            return self._stub(plan.hop.address or "").Forward(envelope, ...)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from exchange.federation.assertion import NodeSigner, VerifiedCustody
from exchange.federation.custody import CustodyVerifier
from exchange.federation.routing import Router
from exchange.federation.serving import ServingNode
from exchange.federation.transport import PeerAuthenticator, open_neighbour_channel
from zhida.federation.v1 import federation_service_pb2_grpc as fpb_grpc

__all__ = [
    "DEFAULT_DEADLINE_SECONDS",
    "PATH_TRAILER",
    "REPLAYED_TRAILER",
    "TRACE_HEADER",
    "Behaviour",
    "ForwardingBase",
    "now_ms",
]

DEFAULT_DEADLINE_SECONDS = 30.0
TRACE_HEADER = "x-trace-id"
PATH_TRAILER = "x-zhida-path"
REPLAYED_TRAILER = "x-zhida-replayed"

Behaviour = Callable[[Any, Any], Any]  # a coroutine function, or an async generator function


def now_ms() -> int:
    """Wall-clock milliseconds: the time base of assertion deadlines."""
    return int(time.time() * 1000)


class ForwardingBase:
    """The parts of a node the forwarding paths use, and its neighbour channels."""

    runtime: Any
    config: Any
    region: str
    router: Router
    signer: NodeSigner
    peers: PeerAuthenticator
    custody: CustodyVerifier
    serving: ServingNode
    _channels: dict[str, grpc.aio.Channel]
    _stubs: dict[str, Any]

    async def close(self) -> None:
        """Close the neighbour channels."""
        channels, self._channels, self._stubs = list(self._channels.values()), {}, {}
        for channel in channels:
            await channel.close(None)

    def channel(self, address: str) -> grpc.aio.Channel:
        """The mTLS channel to the neighbour at ``address`` (opened in the serving loop)."""
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = open_neighbour_channel(self.config, address)
        return channel

    def _stub(self, address: str) -> Any:
        stub = self._stubs.get(address)
        if stub is None:  # created in the serving loop, on first use
            stub = self._stubs[address] = fpb_grpc.FederationServiceStub(self.channel(address))
        return stub

    def _decided_at(self, verified: VerifiedCustody | None, peer: Any) -> str:
        """The ``x-zhida-path`` of a call this node ends: the verified path and this node;
        before the custody is verified, only what the mTLS handshake proved (the peer)."""
        if verified is not None:
            return ",".join([*verified.path, self.region])
        return ",".join([peer.region_code, self.region])
