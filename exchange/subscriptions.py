"""Subscriptions to a dataset's changes, and hosted uploads: the use cases behind their RPCs.

:class:`Subscriptions` — a department subscribes its organisation to a
resource it holds a grant for (``PERMISSION_DENIED`` ``NO_GRANT`` /
``GRANT_REVOKED`` / ``GRANT_EXPIRED`` otherwise; subscribing again returns
the existing subscription), lists, cancels and acknowledges. A subscription's
id names the node that holds it, ``<region>-<32 hex>`` (the node's region
code; just the hex on a node constructed without one): a node of the
federation forwards ReceiveChanges, AcknowledgeChanges and CancelSubscription
for it there (:func:`exchange.federation.targets.subscription_region`). Only the
subscriber organisation sees or touches a subscription
(``PERMISSION_DENIED`` ``NOT_SUBSCRIBER``); a cancelled one delivers nothing
(``FAILED_PRECONDITION`` ``SUBSCRIPTION_CANCELLED``). An acknowledged cursor
never moves back (``FAILED_PRECONDITION`` ``CURSOR_BEHIND``).

:class:`HostedUploads` — the provider department (or its admin) puts a
snapshot or changes of a hosted resource's data on the node
(:mod:`exchange.upload` parses, :mod:`exchange.hosted` plans, the store
applies). Another organisation gets ``PERMISSION_DENIED`` ``NOT_PROVIDER``; a
resource delivered by a provider of its own ``FAILED_PRECONDITION``
``NOT_HOSTED``.

Every method blocks (database); handlers run them in the I/O pool.

Example::

    subs = Subscriptions(SubscriptionStore(db), ctx.grants, ctx.clock, region="420000")
    sub = subs.create(clerk, "1-02-001-0000-000008")
    subs.acknowledge(clerk, sub.id, "42")
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime

from catalog_registry.model import Resource, ResourceStatus
from exchange.delivery import canonical_code
from exchange.delivery_sql import Subscription, SubscriptionStore
from exchange.grants import GrantIndex
from exchange.hosted import HostedStore, UploadBatch, UploadResult
from exchange.provider import ProviderDirectory
from exchange.upload import parse_upload
from zhida.auth.principal import Principal
from zhida.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from zhida.exchange.v1 import exchange_service_pb2 as pb

MAX_CURSOR = 512
MAX_UPLOAD_ID = 128


def _bad(field: str, problem: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field} {problem}", reason="INVALID_ARGUMENT", violations=[FieldViolation(field, problem)]
    )


class Subscriptions:
    """Create, list, cancel, acknowledge (see the module docstring)."""

    def __init__(
        self,
        store: SubscriptionStore,
        grants: GrantIndex,
        clock: Callable[[], datetime],
        region: str = "",
    ) -> None:
        self.store = store
        self._grants = grants
        self._clock = clock
        self._prefix = f"{region}-" if region else ""

    def create(self, principal: Principal, resource_code: str) -> Subscription:
        code = canonical_code(resource_code)
        grant = self._grants.check(principal.organisation, code, self._clock())
        for sub in self.store.of(principal.organisation):
            if sub.resource_code == code and sub.cancelled_at is None:
                return sub
        sub = Subscription(
            id=self._prefix + uuid.uuid4().hex, subscriber_org=principal.organisation,
            resource_code=code, grant_id=grant.id, acknowledged_cursor="",
            created_by=principal.subject, created_at=self._clock(),
        )  # fmt: skip
        self.store.insert(sub)
        return sub

    def of(self, principal: Principal) -> list[Subscription]:
        return self.store.of(principal.organisation)

    def owned(self, principal: Principal, subscription_id: str) -> Subscription:
        """The caller organisation's subscription ``subscription_id``."""
        if not subscription_id:
            raise _bad("subscription_id", "is required")
        sub = self.store.get(subscription_id)
        if sub is None:
            raise NotFound(
                f"subscription {subscription_id} not found",
                reason="SUBSCRIPTION_NOT_FOUND",
                metadata={"subscription_id": subscription_id},
            )
        if sub.subscriber_org != principal.organisation:
            raise PermissionDenied(
                f"subscription {subscription_id} belongs to another organisation",
                reason="NOT_SUBSCRIBER",
                metadata={"subscription_id": subscription_id},
            )
        return sub

    def active(self, principal: Principal, subscription_id: str) -> Subscription:
        sub = self.owned(principal, subscription_id)
        if sub.cancelled_at is not None:
            raise FailedPrecondition(
                f"subscription {subscription_id} was cancelled",
                reason="SUBSCRIPTION_CANCELLED",
                metadata={"subscription_id": subscription_id},
            )
        return sub

    def cancel(self, principal: Principal, subscription_id: str) -> Subscription:
        sub = self.owned(principal, subscription_id)
        if sub.cancelled_at is not None:
            return sub
        cancelled = self.store.update(subscription_id, cancelled_at=self._clock())
        return cancelled or dataclasses.replace(sub, cancelled_at=self._clock())

    def acknowledge(self, principal: Principal, subscription_id: str, cursor: str) -> Subscription:
        if not cursor:
            raise _bad("cursor", "is required")
        if len(cursor) > MAX_CURSOR:
            raise _bad("cursor", f"is longer than {MAX_CURSOR} characters")
        sub = self.active(principal, subscription_id)
        held = sub.acknowledged_cursor
        if held.isdigit() and cursor.isdigit() and int(cursor) < int(held):
            raise FailedPrecondition(
                f"cursor {cursor} is behind the acknowledged cursor {held}",
                reason="CURSOR_BEHIND",
                metadata={"acknowledged_cursor": held},
            )
        updated = self.store.update(subscription_id, acknowledged_cursor=cursor)
        return updated or dataclasses.replace(sub, acknowledged_cursor=cursor)


class HostedUploads:
    """Uploads into the hosted provider (see the module docstring)."""

    def __init__(
        self,
        store: HostedStore,
        get_resource: Callable[[str], Resource | None],
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self._get_resource = get_resource
        self._clock = clock

    def apply(self, principal: Principal, header: pb.UploadHeader, data: bytes) -> UploadResult:
        code = canonical_code(header.resource_code)
        if header.mode not in (pb.UPLOAD_MODE_SNAPSHOT, pb.UPLOAD_MODE_CHANGES):
            raise _bad("header.mode", "must be SNAPSHOT or CHANGES")
        formats = {pb.DATASET_FORMAT_CSV: "csv", pb.DATASET_FORMAT_JSON: "json"}
        if header.format not in formats:
            raise _bad("header.format", "must be CSV or JSON")
        if not header.key_item:
            raise _bad("header.key_item", "is required")
        if len(header.upload_id) > MAX_UPLOAD_ID:
            raise _bad("header.upload_id", f"is longer than {MAX_UPLOAD_ID} characters")
        resource = self._get_resource(code)
        if resource is None:
            raise NotFound(f"resource {code} not found", reason="RESOURCE_NOT_FOUND")
        if principal.organisation != resource.provider_code:
            raise PermissionDenied(
                f"only {resource.provider_name} uploads data of {code}",
                reason="NOT_PROVIDER",
                metadata={"resource_code": code},
            )
        if resource.status is ResourceStatus.RETIRED:
            raise FailedPrecondition(f"resource {code} is retired", reason="RESOURCE_RETIRED")
        if not ProviderDirectory.is_hosted(resource):
            raise FailedPrecondition(
                f"{code} is delivered by {resource.spec.delivery_service!r}, not hosted here",
                reason="NOT_HOSTED",
                metadata={"resource_code": code},
            )
        items = {item.name: item.type for item in resource.items}
        snapshot = header.mode == pb.UPLOAD_MODE_SNAPSHOT
        parsed = parse_upload(
            data, formats[header.format], header.key_item, items, changes=not snapshot
        )
        digest = hashlib.sha256(
            f"{header.mode}|{header.format}|{header.key_item}|".encode() + data
        ).hexdigest()
        batch = UploadBatch(
            resource_code=code, provider_org=resource.provider_code, key_item=header.key_item,
            snapshot=snapshot, upserts=parsed.upserts, deletes=parsed.deletes,
            upload_id=header.upload_id, content_hash=digest, uploaded_by=principal.subject,
            at=self._clock(),
        )  # fmt: skip
        return self.store.apply(batch)
