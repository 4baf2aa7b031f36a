"""The data resource catalogue and the three lists: supply, demand, negative (issue 3).

Pure domain code (no gRPC, no SQL). Modules:

- ``model`` — resource codes, data items, resources, demands, negative entries, changes
- ``validation`` — field-by-field checks raising one ``InvalidArgument`` with every violation
- ``repository`` — the ``CatalogRepository`` protocol a store implements; ``memory`` the
  in-memory implementation
- ``registry`` — register / update / publish / retire / get / history; file demands
- ``negative_list`` — the negative list with O(1) ``may_release`` decisions
- ``matching`` / ``todo`` — demand ↔ supply matching (exact, then Chinese n-gram
  similarity) and the suppliers' to-do list of unmet demands
- ``coverage`` — per department and region counts; ``search`` — keyword search with
  filters and keyset page tokens; ``federation`` — change feed and imports from children
- ``importexport`` — CSV/JSON bulk import (all or nothing), JSON and DCAT-AP export
- ``sample_data`` / ``sample_tables`` — the demo catalogue; ``synthetic`` — catalogues at scale

Node side (issue 3, second part):

- ``models`` / ``sql`` / ``sql_write`` / ``sql_search`` / ``sql_filters`` / ``codec`` — the SQL
  store (SQLite and PostgreSQL) passing the same repository contract, with keyword search in SQL
- ``live`` — the store plus the in-memory match index and negative list a node keeps fresh
- ``wire`` / ``service`` — ``zhida.catalog.v1.CatalogService`` (protobuf ⇄ domain, the servicer)
- ``client`` / ``render`` / ``supply`` / ``paging`` — the sample over gRPC, rich tables, the
  supply list, page tokens of the list calls

Example::

    from catalog_registry.memory import InMemoryCatalogRepository
    from catalog_registry.negative_list import NegativeList
    from catalog_registry.registry import CatalogRegistry
    from catalog_registry.sample_data import load_sample

    repo = InMemoryCatalogRepository()
    registry = CatalogRegistry(repo, clock)
    demands = load_sample(registry, NegativeList(repo, clock))
"""
