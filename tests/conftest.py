"""Shared pytest wiring: real-server fixtures live in tests/fixtures/ as plugins."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.seaweedfs",
    "tests.fixtures.node",
]
