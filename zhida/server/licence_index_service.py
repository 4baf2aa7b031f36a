"""``zhida.federation.v1.LicenceIndexService``: the federation's licence index (issue 8, item 4).

A thin servicer over the node's :class:`~exchange.federation.licence_routing.LicenceLocator`
(``Federation.licences``: this node's :class:`~exchange.federation.licence_index.LicenceIndex`
and its parent):

* ``PushLicenceIndex`` — a child node's page of index entries
  (:meth:`LicenceIndex.accept_push`: a node below this one, entries of its
  own subtree, at most 500). The background push of every node sends its
  whole index (own licences and what its children pushed) on to its parent,
  so entries travel county → city → province → national.
* ``LocateHolder`` — where a holder's licences are: this node's index, or,
  when its subtree holds none, its parent's answer (asked as this node). An
  admin may ask by holder id (hashed here); nodes ask by keyed hash. Each
  answer is one ``data.request`` event (``details.federation = locate``) in
  this node's audit log, with the trace id the asking node passed on.

The caller of either as role ``node`` must have come over the mutual-TLS
port (its certificate, not a bearer token: UNAUTHENTICATED
``NODE_CERT_REQUIRED``). A node without ``[federation]`` settings answers
FAILED_PRECONDITION ``FEDERATION_DISABLED``.

Example::

    stub = LicenceIndexServiceStub(open_neighbour_channel(config, parent_address))
    where = await stub.LocateHolder(LocateHolderRequest(holder_ref=ref, type_codes=["…"]))
    where.regions                     # ['430000']
"""

from __future__ import annotations

from typing import Any

from audit_log.events import Action
from exchange.federation.forwarder import federation_for
from exchange.federation.licence_index import HOLDER_REF
from exchange.federation.licence_routing import LicenceLocator, entry_of, location_message
from exchange.federation.transport import NODE_PRINCIPAL_ISSUER
from licence_vault.holder import detect_code_type, validate_holder
from zhida.auth.principal import Principal, Role
from zhida.errors import FailedPrecondition, FieldViolation, InvalidArgument, Unauthenticated
from zhida.federation.v1 import licence_index_pb2 as pb
from zhida.federation.v1 import licence_index_pb2_grpc as pb_grpc
from zhida.server.context import current_principal
from zhida.server.runtime import NodeRuntime

__all__ = ["LicenceIndexService"]


def _require_node_cert(principal: Principal) -> None:
    if principal.role is Role.NODE and principal.issuer != NODE_PRINCIPAL_ISSUER:
        raise Unauthenticated(
            "a node calls the licence index over the federation's mutual-TLS port",
            reason="NODE_CERT_REQUIRED",
        )


class LicenceIndexService(pb_grpc.LicenceIndexServiceServicer):
    """See ``protos/zhida/federation/v1/licence_index.proto``."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime = runtime

    def _locator(self) -> LicenceLocator:
        federation = federation_for(self.runtime)
        if federation is None:
            raise FailedPrecondition(
                "this node takes no part in a federation", reason="FEDERATION_DISABLED"
            )
        return federation.licences

    async def PushLicenceIndex(
        self, request: pb.PushLicenceIndexRequest, context: Any
    ) -> pb.PushLicenceIndexResponse:
        principal = current_principal()
        _require_node_cert(principal)
        locator = self._locator()
        entries = [entry_of(m) for m in request.entries]
        result = await self.runtime.run_blocking(locator.index.accept_push, principal, entries)
        return pb.PushLicenceIndexResponse(accepted=result.accepted, duplicates=result.duplicates)

    async def LocateHolder(
        self, request: pb.LocateHolderRequest, context: Any
    ) -> pb.LocateHolderResponse:
        principal = current_principal()
        _require_node_cert(principal)
        locator = self._locator()
        holder: str | None = None
        if request.WhichOneof("holder") == "holder_id":
            code = request.holder_id
            holder = validate_holder(code, detect_code_type(code), field="holder_id")
            holder_ref = locator.index.holder_ref(holder)
        else:
            holder_ref = request.holder_ref
            if not HOLDER_REF.fullmatch(holder_ref):
                raise InvalidArgument(
                    "give a holder id or its keyed hash (64 lower-case hex characters)",
                    reason="INVALID_HOLDER",
                    violations=[FieldViolation("holder_ref", "must be the holder's keyed hash")],
                )
        answered_by, where = await locator.locate(holder_ref, list(request.type_codes))
        details = {
            "federation": "locate",
            "answered_by": answered_by,
            "regions": ",".join(where.regions),
            "type_codes": ",".join(request.type_codes),
        }
        await self.runtime.recorder.record(
            Action.DATA_REQUEST,
            holder_id=holder,
            details={k: v for k, v in details.items() if v},  # audit details are never empty
        )
        return location_message(where, answered_by)
