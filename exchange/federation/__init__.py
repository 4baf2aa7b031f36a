"""Federation between exchange nodes (issue 8): assertions, custody, routing, idempotency.

Pure building blocks, free of gRPC: :mod:`~exchange.federation.assertion`
(signed caller assertions and hop records), :mod:`~exchange.federation.replay`
(the ``jti`` replay cache), :mod:`~exchange.federation.routing` (where a
request for a region goes next, deadline budgets, loops) and
:mod:`~exchange.federation.idempotency` (a retried request is executed once).
Node certificates for mutual TLS are in :mod:`signing.node_certs`.

On the node, with gRPC: :mod:`~exchange.federation.transport` (the mTLS port,
neighbour channels, the peer as a Principal), :mod:`~exchange.federation.targets`
(which calls are forwarded, to which region), :mod:`~exchange.federation.forwarder`
(the origin and each hop; unary calls in ``forward_unary``, streams in
``forward_stream``, shared parts in ``forward_base``, ``forward_retry`` and
``forward_audit``), :mod:`~exchange.federation.serving` and
:mod:`~exchange.federation.dispatch` (the serving node, in-process) and
:mod:`~exchange.federation.remote` (a neighbour's failures).
"""
