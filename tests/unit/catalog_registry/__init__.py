"""Unit tests of the catalogue domain (catalog_registry)."""
