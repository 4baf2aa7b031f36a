"""Catalogue use cases: register, update, publish, retire, get, history; file demands.

:class:`CatalogRegistry` takes a :class:`~catalog_registry.repository.CatalogRepository`
and a clock and makes every decision itself: validation (``InvalidArgument``
reason ``INVALID_RESOURCE``), authorisation (only the provider department —
``principal.organisation`` equal to the provider's USCC — or an admin may
change a resource: ``PermissionDenied`` reason ``NOT_RESOURCE_OWNER``), the
lifecycle DRAFT → PUBLISHED → RETIRED (``FailedPrecondition`` reason
``INVALID_TRANSITION``) and the negative-list rule (a resource is published,
or a published one updated, only if no negative-listed part is offered for
sharing: ``FailedPrecondition`` reason ``NEGATIVE_LISTED_SHAREABLE``).

On a node (``node_region`` given) the catalogue holds its own region's
resources: a resource registered or updated there must be of the node's
region or one below it (``InvalidArgument`` reason ``OUTSIDE_NODE_REGION``,
field ``region_code``). A copy — a resource whose latest change came from
another node by catalogue federation, pulled from the parent or pushed up by
a child — is never updated, published or retired here, only at its own node
(``FailedPrecondition`` reason ``IMPORTED_RESOURCE``, metadata
``home_region``; the rule the negative list applies, :func:`access.require_home`).
Federation imports themselves do not pass through the registry. Related
codes must name resources this catalogue holds (``related_codes[i]``).

Every write creates a new version (``version`` + 1) and keeps the old one.
Drafts are visible only to their provider and admins (others get NotFound).
Listeners (e.g. ``MatchIndex.sync``) are called with each new version.

Example::

    registry = CatalogRegistry(InMemoryCatalogRepository(), clock)
    draft = registry.register(dept, spec)          # version 1, DRAFT
    live = registry.publish(dept, draft.key)       # version 2, PUBLISHED
    assert [r.version for r in registry.history(dept, draft.key)] == [1, 2]
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime

from catalog_registry.access import (
    WRITERS,
    is_admin,
    may_see_draft,
    require_home,
    require_owner,
    require_role,
)
from catalog_registry.model import (
    Demand,
    DemandSpec,
    Resource,
    ResourceCode,
    ResourceSpec,
    ResourceStatus,
)
from catalog_registry.negative_list import shareable_negative_items
from catalog_registry.repository import CatalogRepository, region_of, region_within
from catalog_registry.validation import check_demand, region_violations, validate_spec
from zhida.auth.principal import Principal
from zhida.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)

Clock = Callable[[], datetime]
Listener = Callable[[Resource], None]

_TRANSITIONS = {
    "publish": (ResourceStatus.DRAFT, ResourceStatus.PUBLISHED),
    "retire": (ResourceStatus.PUBLISHED, ResourceStatus.RETIRED),
}


class CatalogRegistry:
    """The supply and demand lists: resource lifecycle and demand filing."""

    def __init__(
        self,
        repo: CatalogRepository,
        clock: Clock,
        *,
        listeners: Iterable[Listener] = (),
        node_region: str | None = None,
    ) -> None:
        if node_region is not None and (problems := region_violations(node_region, "node_region")):
            raise InvalidArgument(
                "invalid node region", reason="INVALID_REGION_CODE", violations=problems
            )
        self._repo = repo
        self._clock = clock
        self._listeners = list(listeners)
        self.node_region = node_region  # None: no node (library use), every region accepted

    @property
    def repository(self) -> CatalogRepository:
        return self._repo

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- resources -----------------------------------------------------------------------
    def register(self, principal: Principal, spec: ResourceSpec) -> Resource:
        """Register a new resource as DRAFT, version 1 (``AlreadyExists`` on a used code)."""
        return self.register_many(principal, [spec])[0]

    def register_many(self, principal: Principal, specs: Sequence[ResourceSpec]) -> list[Resource]:
        """Register several resources, all or nothing (bulk import)."""
        require_role(principal, WRITERS, "register resources")
        batch = {spec.code.text for spec in specs}

        def named(i: int, found: Iterable[FieldViolation]) -> list[FieldViolation]:
            prefix = f"resources[{i}]." if len(specs) > 1 else ""
            return [FieldViolation(prefix + v.field, v.description) for v in found]

        violations = [
            v
            for i, spec in enumerate(specs)
            for v in named(i, validate_spec(spec) or self.unknown_related(spec, batch))
        ]
        if violations:
            raise InvalidArgument(
                "invalid resource", reason="INVALID_RESOURCE", violations=violations
            )
        for spec in specs:
            require_owner(principal, spec.provider_code, spec.code.text)
        self._require_within(
            [v for i, s in enumerate(specs) for v in named(i, self.outside_region(s.region_code))]
        )
        now = self._clock()
        resources = [
            Resource(
                spec,
                region_of(spec.region_code).level,
                1,
                ResourceStatus.DRAFT,
                now,
                now,
                updated_by=principal.subject,
            )
            for spec in specs
        ]
        self._repo.insert_resources(resources)
        self._notify(resources)
        return resources

    def update(
        self, principal: Principal, spec: ResourceSpec, *, expected_version: int | None = None
    ) -> Resource:
        """Store a new version of the resource's content; the status stays.

        ``expected_version`` (optional) guards against lost updates
        (``Aborted`` reason ``VERSION_CONFLICT``). Only admins may move a
        resource to another provider.
        """
        current = self._current(spec.code.text)
        require_owner(principal, current.provider_code, current.key)
        require_home(self._repo, self.node_region, current, "update it")
        if spec.provider_code != current.provider_code and not is_admin(principal):
            raise PermissionDenied(
                f"only an admin may move {current.key} to another provider",
                reason="PROVIDER_CHANGE_NOT_ALLOWED",
                metadata={"code": current.key},
            )
        violations = validate_spec(spec) or self.unknown_related(spec)
        if violations:
            raise InvalidArgument(
                f"invalid resource {spec.code.text}",
                reason="INVALID_RESOURCE",
                violations=violations,
            )
        self._require_within(self.outside_region(spec.region_code))  # no move out of the region
        if current.status is ResourceStatus.RETIRED:
            raise FailedPrecondition(
                f"resource {current.key} is retired and cannot change",
                reason="INVALID_TRANSITION",
                metadata={"code": current.key, "status": "retired"},
            )
        if expected_version is not None and expected_version != current.version:
            raise Aborted(
                f"resource {current.key} is at version {current.version}",
                reason="VERSION_CONFLICT",
                metadata={"code": current.key, "current_version": str(current.version)},
            )
        if current.status is ResourceStatus.PUBLISHED:
            self._check_negative(spec)
        level = region_of(spec.region_code).level
        changed = dataclasses.replace(current, spec=spec, level=level)
        return self._write(principal, current, changed, self._clock())

    def publish(self, principal: Principal, code: str | ResourceCode) -> Resource:
        """DRAFT → PUBLISHED, refused while a negative-listed part is shareable."""
        current = self._current(_key(code))
        require_owner(principal, current.provider_code, current.key)
        require_home(self._repo, self.node_region, current, "publish it")
        self._check_transition(current, "publish")
        self._check_negative(current.spec)
        now = self._clock()
        changed = dataclasses.replace(current, status=ResourceStatus.PUBLISHED, published_at=now)
        return self._write(principal, current, changed, now)

    def retire(self, principal: Principal, code: str | ResourceCode) -> Resource:
        """PUBLISHED → RETIRED; the resource leaves the supply list, its history stays."""
        current = self._current(_key(code))
        require_owner(principal, current.provider_code, current.key)
        require_home(self._repo, self.node_region, current, "retire it")
        self._check_transition(current, "retire")
        now = self._clock()
        changed = dataclasses.replace(current, status=ResourceStatus.RETIRED, retired_at=now)
        return self._write(principal, current, changed, now)

    def get(self, principal: Principal, code: str | ResourceCode) -> Resource:
        """The current version (drafts only for their provider and admins)."""
        current = self._current(_key(code))
        if current.status is ResourceStatus.DRAFT and not may_see_draft(
            principal, current.provider_code
        ):
            raise _not_found(current.key)
        return current

    def history(self, principal: Principal, code: str | ResourceCode) -> list[Resource]:
        """Every version, oldest first; draft versions only for the provider and admins."""
        current = self.get(principal, code)
        versions = self._repo.resource_history(current.key)
        if may_see_draft(principal, current.provider_code):
            return versions
        return [v for v in versions if v.status is not ResourceStatus.DRAFT]

    # -- demands -------------------------------------------------------------------------
    def file_demand(self, principal: Principal, spec: DemandSpec) -> Demand:
        """File a demand-list entry for the caller's own department (admins for any)."""
        require_role(principal, WRITERS, "file demands")
        check_demand(spec)
        if not is_admin(principal) and principal.organisation != spec.requester_code:
            raise PermissionDenied(
                f"{principal.organisation} may not file demands for {spec.requester_code}",
                reason="NOT_REQUESTING_DEPARTMENT",
                metadata={"requester_code": spec.requester_code},
            )
        demand = Demand(f"dm-{uuid.uuid4().hex}", spec, self._clock(), principal.subject)
        self._repo.insert_demand(demand)
        return demand

    def get_demand(self, principal: Principal, demand_id: str) -> Demand:
        demand = self._repo.get_demand(demand_id)
        if demand is None:
            raise NotFound(
                f"demand {demand_id} not found",
                reason="DEMAND_NOT_FOUND",
                metadata={"demand_id": demand_id},
            )
        return demand

    def list_demands(self, principal: Principal, requester_code: str | None = None) -> list[Demand]:
        return [
            d
            for d in self._repo.iter_demands()
            if requester_code is None or d.requester_code == requester_code
        ]

    # -- the node's region ----------------------------------------------------------------
    def outside_region(self, region_code: str, field: str = "region_code") -> list[FieldViolation]:
        """A violation unless ``region_code`` (valid) is this node's region or lies below it."""
        node = self.node_region
        if node is None or region_within(region_code, node):
            return []
        return [FieldViolation(field, f"must be within this node's region {node}")]

    def unknown_related(
        self, spec: ResourceSpec, also_known: Collection[str] = ()
    ) -> list[FieldViolation]:
        """Related codes that name no resource in this catalogue (nor in ``also_known``)."""
        return [
            FieldViolation(f"related_codes[{i}]", f"no resource {code.text} in this catalogue")
            for i, code in enumerate(spec.related_codes)
            if code.text not in also_known and self._repo.get_resource(code.text) is None
        ]

    def _require_within(self, violations: Sequence[FieldViolation]) -> None:
        if violations:
            raise InvalidArgument(
                f"this node's catalogue holds resources of region {self.node_region} and below; "
                "register and change the others at their own region's node",
                reason="OUTSIDE_NODE_REGION",
                violations=violations,
                metadata={"node_region": self.node_region or ""},
            )

    # -- internals -----------------------------------------------------------------------
    def _current(self, code: str) -> Resource:
        current = self._repo.get_resource(code)
        if current is None:
            raise _not_found(code)
        return current

    def _check_transition(self, current: Resource, action: str) -> None:
        source, target = _TRANSITIONS[action]
        if current.status is not source:
            raise FailedPrecondition(
                f"cannot {action} {current.key}: it is {current.status.value}, "
                f"only a {source.value} resource becomes {target.value}",
                reason="INVALID_TRANSITION",
                metadata={"code": current.key, "status": current.status.value, "action": action},
            )

    def _check_negative(self, spec: ResourceSpec) -> None:
        violations = shareable_negative_items(spec, self._repo.negative_entries(spec.code.text))
        if violations:
            raise FailedPrecondition(
                f"resource {spec.code.text} offers negative-listed data for sharing; "
                "mark those items not_shared",
                reason="NEGATIVE_LISTED_SHAREABLE",
                violations=violations,
                metadata={"code": spec.code.text},
            )

    def _write(
        self, principal: Principal, current: Resource, changed: Resource, now: datetime
    ) -> Resource:
        """Store ``changed`` as the next version of ``current`` (compare-and-set)."""
        new = dataclasses.replace(
            changed, version=current.version + 1, updated_at=now, updated_by=principal.subject
        )
        self._repo.replace_resource(new, expected_version=current.version)
        self._notify([new])
        return new

    def _notify(self, resources: Sequence[Resource]) -> None:
        for listener in self._listeners:
            for resource in resources:
                listener(resource)


def _key(code: str | ResourceCode) -> str:
    if isinstance(code, ResourceCode):
        return code.text
    return ResourceCode.parse(code).text


def _not_found(code: str) -> NotFound:
    return NotFound(
        f"resource {code} not found", reason="RESOURCE_NOT_FOUND", metadata={"code": code}
    )
