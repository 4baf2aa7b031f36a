"""Idempotency keys (a retried request runs once) and the jti replay cache."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from exchange.federation.idempotency import (
    ClaimState,
    InMemoryIdempotencyStore,
    run_once,
    scoped_key,
)
from exchange.federation.replay import InMemoryReplayCache
from zhida.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_states_and_expiry() -> None:
    clock = Clock()
    store = InMemoryIdempotencyStore(clock=clock)
    key = scoped_key("420102", "11420102MB1A23456R", "clerk-7", "req-1")
    assert store.begin(key, "d", ttl_seconds=60, lease_seconds=5).state is ClaimState.NEW
    assert store.begin(key, "d", ttl_seconds=60, lease_seconds=5).state is ClaimState.IN_PROGRESS
    clock.now += 6  # the first attempt's lease ran out (it crashed): a retry takes over
    assert store.begin(key, "d", ttl_seconds=60, lease_seconds=5).state is ClaimState.NEW
    store.complete(key, b"resp")
    claim = store.begin(key, "d", ttl_seconds=60, lease_seconds=5)
    assert (claim.state, claim.response) == (ClaimState.DONE, b"resp")
    with pytest.raises(InvalidArgument) as info:
        store.begin(key, "other digest", ttl_seconds=60, lease_seconds=5)
    assert info.value.reason == "IDEMPOTENCY_KEY_REUSED"
    with pytest.raises(FailedPrecondition):
        store.complete(key, b"again")
    clock.now += 120  # the stored response expired
    assert store.begin(key, "other digest", ttl_seconds=60, lease_seconds=5).state is (
        ClaimState.NEW
    )
    store.abandon(key)
    assert len(store) == 0


def test_scoped_keys_separate_callers() -> None:
    a = scoped_key("420102", "11420102MB1A23456R", "clerk-7", "req-1")
    assert a != scoped_key("420102", "11420102MB1A23456R", "clerk-8", "req-1")
    assert a != scoped_key("420100", "11420102MB1A23456R", "clerk-7", "req-1")
    with pytest.raises(InvalidArgument):
        scoped_key("420102", "org", "clerk", "")


def test_concurrent_attempts_run_once() -> None:
    store = InMemoryIdempotencyStore()
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> bytes:
        calls.append(1)
        started.set()
        release.wait(5)
        return b"done"

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(run_once, store, "k", "d", slow)
        assert started.wait(5)
        others = [pool.submit(run_once, store, "k", "d", slow) for _ in range(3)]
        for future in others:
            with pytest.raises(Aborted) as info:
                future.result(5)
            assert info.value.reason == "IDEMPOTENT_REQUEST_IN_PROGRESS"
        release.set()
        assert first.result(5) == b"done"
    assert len(calls) == 1
    assert run_once(store, "k", "d", slow) == b"done"


def test_idempotency_store_is_bounded() -> None:
    clock = Clock()
    store = InMemoryIdempotencyStore(max_entries=2, clock=clock)
    store.begin("a", "d", ttl_seconds=10, lease_seconds=1)
    store.begin("b", "d", ttl_seconds=10, lease_seconds=1)
    with pytest.raises(ResourceExhausted):
        store.begin("c", "d", ttl_seconds=10, lease_seconds=1)
    clock.now += 11
    assert store.begin("c", "d", ttl_seconds=10, lease_seconds=1).state is ClaimState.NEW


def test_replay_cache() -> None:
    clock = Clock()
    cache = InMemoryReplayCache(max_entries=2, clock=clock)
    assert cache.remember("a", expires_at=1_060)
    assert not cache.remember("a", expires_at=1_060)
    assert cache.remember("b", expires_at=1_030)
    with pytest.raises(ResourceExhausted) as info:
        cache.remember("c", expires_at=1_060)
    assert info.value.reason == "REPLAY_CACHE_FULL"
    clock.now = 1_030  # b expired: room again, and b may be seen anew (its assertion is expired)
    assert cache.remember("c", expires_at=1_060)
    assert len(cache) == 2
    clock.now = 1_061
    assert len(cache) == 0
    assert cache.remember("a", expires_at=1_120)
