"""The supply list (供给清单): what each department offers, item by item.

A supply entry is a published resource with its items split into those
offered for sharing and those withheld — marked not shared (不予共享) or
negative-listed — and the service that delivers the data.

Example::

    entry = supply_entry(resource, negative.may_release)
    print(entry.name, [i.name for i in entry.offered], entry.withheld)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from catalog_registry.model import DataItem, Resource, ShareType
from catalog_registry.negative_list import Decision


@dataclass(frozen=True, slots=True)
class SupplyEntry:
    resource: Resource
    offered: tuple[DataItem, ...]
    withheld: tuple[str, ...]  # item names

    @property
    def name(self) -> str:
        return self.resource.name


def supply_entry(resource: Resource, may_release: Callable[[str, str], Decision]) -> SupplyEntry:
    """Split ``resource``'s items by whether they may be shared at all."""
    offered: list[DataItem] = []
    withheld: list[str] = []
    for item in resource.items:
        shared = resource.item_share_type(item) is not ShareType.NOT_SHARED
        if shared and may_release(resource.key, item.name).allowed:
            offered.append(item)
        else:
            withheld.append(item.name)
    return SupplyEntry(resource, tuple(offered), tuple(withheld))
