"""The suppliers' to-do list: unmet demands grouped per candidate provider department.

A demand is unmet when matching found no exact match and no candidate at or
above the similarity threshold. Each unmet demand goes to the provider of its
best near miss — the department whose data looks most like what was asked
for — or, when even that is too weak, to the unassigned group the data
authority (数据管理机构) routes by hand.

Example::

    from catalog_registry.todo import unmet_report
    for todo in unmet_report(index.match_all(repo.iter_demands())):
        print(todo.provider_name or "(unassigned)", len(todo.demands))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from catalog_registry.matching import Candidate, DemandMatch
from catalog_registry.model import Demand

UNASSIGNED = ""  # provider_code of the group of unmet demands with no plausible supplier


@dataclass(frozen=True, slots=True)
class UnmetDemand:
    demand: Demand
    near_misses: tuple[Candidate, ...]  # the candidates below the threshold, best first


@dataclass(frozen=True, slots=True)
class ProviderTodo:
    """One supplier's to-do list: demands nobody meets yet that look like its data."""

    provider_code: str  # UNASSIGNED for demands the data authority must route itself
    provider_name: str
    demands: tuple[UnmetDemand, ...]


def unmet_report(matches: Iterable[DemandMatch], *, min_assign: float = 0.2) -> list[ProviderTodo]:
    """Group unmet demands under the provider of their best near miss.

    A demand whose best candidate has a similarity below ``min_assign`` (or
    that has none) goes to the ``UNASSIGNED`` group. Groups are ordered by
    size, largest first, then by provider code; the unassigned group is last.
    """
    groups: dict[str, tuple[str, list[UnmetDemand]]] = {}
    for match in matches:
        if match.met:
            continue
        best = match.candidates[0] if match.candidates else None
        if best is None or best.similarity < min_assign:
            key, name = UNASSIGNED, ""
        else:
            key, name = best.provider_code, best.provider_name
        groups.setdefault(key, (name, []))[1].append(UnmetDemand(match.demand, match.candidates))
    todos = [ProviderTodo(code, name, tuple(items)) for code, (name, items) in groups.items()]
    todos.sort(key=lambda t: (t.provider_code == UNASSIGNED, -len(t.demands), t.provider_code))
    return todos
