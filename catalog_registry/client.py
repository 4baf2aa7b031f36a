"""Driving a node's CatalogService from a client: the sample catalogue over the wire.

Used by ``zhida catalog load-sample``, the demo and the integration tests.
:func:`load_sample` does what :func:`catalog_registry.sample_data.load_sample`
does in process, through gRPC: each resource is registered by its provider
department, the admin fills the negative list, then every resource is
published and the departments file their demands. A node takes only its own
region's resources, so the caller names the node's region (and, when several
nodes share the sample, the others: ``sample_for_node``); a node's region is
``NodeService.GetNodeInfo``'s ``region_code``.

``metadata_for(uscc)`` returns the call metadata of the department with that
unified social credit code, or of the admin for ``None`` (with only an admin
token, pass ``lambda _: admin``: an admin may act for any department).

Example::

    stub = CatalogServiceStub(channel)
    metadata_for = lambda uscc: bearer(tokens.get(uscc, admin_token))
    loaded = load_sample(stub, metadata_for, region="420102")  # 江岸区: its own resources
    print(len(loaded.resources), [m.met for m in loaded.demands])
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from catalog_registry import wire
from catalog_registry.model import DemandSpec
from catalog_registry.sample_data import sample_for_node
from zhida.catalog.v1 import catalog_service_pb2 as pb
from zhida.catalog.v1 import catalog_service_pb2_grpc as pb_grpc

Metadata = tuple[tuple[str, str], ...]  # what zhida.client.bearer returns
MetadataFor = Callable[[str | None], Metadata]
TIMEOUT = 30.0


@dataclass(frozen=True)
class LoadedSample:
    resources: tuple[pb.Resource, ...]  # as published
    negative: tuple[pb.NegativeEntry, ...]
    demands: tuple[pb.DemandMatch, ...]


def load_sample(
    stub: pb_grpc.CatalogServiceStub,
    metadata_for: MetadataFor,
    progress: Callable[[str], None] = lambda _step: None,
    *,
    region: str,
    nodes: Collection[str] = (),
    demands: bool = True,
) -> LoadedSample:
    """Register, negative-list and publish the node's part of the sample; file its demands.

    ``region``: the node's; ``nodes``: other nodes loading the sample (their
    parts are left to them); ``demands=False`` leaves the demands to
    :func:`file_demands` (e.g. once catalogue federation brought the upper
    levels' resources down).
    """
    cat = sample_for_node(region, nodes)
    for spec in cat.resources:
        stub.RegisterResource(
            pb.RegisterResourceRequest(resource=wire.spec_to_pb(spec)),
            metadata=metadata_for(spec.provider_code),
            timeout=TIMEOUT,
        )
        progress(f"registered {spec.code.text} {spec.name}")
    negative = []
    for entry in cat.negative:
        reply = stub.AddNegativeEntry(
            pb.AddNegativeEntryRequest(
                resource_code=entry.code, item_names=entry.item_names, legal_basis=entry.legal_basis
            ),
            metadata=metadata_for(None),
            timeout=TIMEOUT,
        )
        negative.append(reply.entry)
        progress(f"negative-listed {entry.code} {'、'.join(entry.item_names) or '(whole)'}")
    published = []
    for spec in cat.resources:
        reply_p = stub.PublishResource(
            pb.PublishResourceRequest(code=spec.code.text),
            metadata=metadata_for(spec.provider_code),
            timeout=TIMEOUT,
        )
        published.append(reply_p.resource)
        progress(f"published {spec.code.text}")
    filed = file_demands(stub, metadata_for, cat.demands, progress) if demands else ()
    return LoadedSample(tuple(published), tuple(negative), filed)


def file_demands(
    stub: pb_grpc.CatalogServiceStub,
    metadata_for: MetadataFor,
    demands: Iterable[DemandSpec],
    progress: Callable[[str], None] = lambda _step: None,
) -> tuple[pb.DemandMatch, ...]:
    """File each demand as its requesting department; the matches, in order."""
    matches = []
    for demand in demands:
        reply = stub.FileDemand(
            pb.FileDemandRequest(demand=wire.demand_spec_to_pb(demand)),
            metadata=metadata_for(demand.requester_code),
            timeout=TIMEOUT,
        )
        matches.append(reply.match)
        progress(f"filed demand {demand.wanted_text}")
    return tuple(matches)
