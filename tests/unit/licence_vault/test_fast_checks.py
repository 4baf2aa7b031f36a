"""The fast check-character code agrees with python-stdnum; fetches are batched in one thread."""

from __future__ import annotations

import asyncio
import contextvars
import random
import string
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from stdnum.cn import uscc
from stdnum.iso7064 import mod_37_36

from licence_vault.codes import is_compact_uscc, mod_37_36_check
from licence_vault.fetch_batcher import FetchBatcher
from licence_vault.holder import HolderCodeType, validate_holder
from licence_vault.results import Actor, FetchRequest, FetchResult
from zhida.errors import DeadlineExceeded, PermissionDenied
from zhida.server.context import DEADLINE

_USCC = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def _uscc_like(rng: random.Random) -> str:
    body = "".join(rng.choice(string.digits) for _ in range(8))
    body += "".join(rng.choice(_USCC) for _ in range(9))
    code = body + (uscc.calc_check_digit(body) if rng.random() < 0.5 else rng.choice(_USCC + "IOZ"))
    if rng.random() < 0.1:  # other characters, case, separators, lengths
        at = rng.randrange(len(code) + 1)
        code = code[:at] + rng.choice(string.printable + "一０") + code[at:]
    if rng.random() < 0.05:
        code = code.lower()
    return code


def test_uscc_check_agrees_with_stdnum() -> None:
    rng = random.Random(32100)
    accepted = 0
    for _ in range(20000):
        code = _uscc_like(rng)
        fast = is_compact_uscc(code)
        assert fast == (uscc.is_valid(code) and uscc.compact(code) == code), code
        accepted += fast
    assert accepted > 5000  # both branches were exercised


def test_holder_validation_is_unchanged_for_separators_and_bad_codes() -> None:
    assert validate_holder("91420102ma4kxy128f", HolderCodeType.USCC) == "91420102MA4KXY128F"
    assert validate_holder("9142-0102MA4KXY128F", HolderCodeType.USCC) == "91420102MA4KXY128F"
    with pytest.raises(Exception, match="check digit"):
        validate_holder("91420102MA4KXY128E", HolderCodeType.USCC)


def test_mod_37_36_agrees_with_stdnum() -> None:
    rng = random.Random(17710)
    alphabet = string.digits + string.ascii_uppercase
    for _ in range(20000):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 70)))
        assert mod_37_36_check(body) == mod_37_36.calc_check_digit(body)
    with pytest.raises(ValueError, match="outside"):
        mod_37_36_check("abc")


ACTOR = Actor("11420106000041013B", "portal")
TRACE: contextvars.ContextVar[str] = contextvars.ContextVar("trace", default="")


def _request(holder: str, record: Any = None) -> FetchRequest:
    return FetchRequest(ACTOR, holder, ["t"], "m", record=record)


class FakeVault:
    """fetch_many that refuses holder "bad", records what each batch held, and is slow."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()

    def fetch_many(self, requests: Sequence[FetchRequest]) -> list[FetchResult | Exception]:
        time.sleep(0.02)
        self.threads.add(threading.current_thread().name)
        self.batches.append([r.holder_code for r in requests])
        out: list[FetchResult | Exception] = []
        for r in requests:
            if r.holder_code == "bad":
                out.append(PermissionDenied("no", reason="CONSENT_NOT_FOUND"))
                continue
            result = FetchResult(basis=None, matter=None, consent=None, items=[])  # type: ignore[arg-type]
            if r.record is not None:
                r.record(result)
            out.append(result)
        return out


def test_concurrent_fetches_run_in_batches_in_one_thread() -> None:
    vault = FakeVault()
    batcher = FetchBatcher(vault.fetch_many)
    seen: dict[str, str] = {}

    def record(holder: str) -> Any:
        def build(_result: FetchResult) -> list[str]:
            seen[holder] = TRACE.get()  # runs in the calling handler's context
            return []

        return build

    async def call(holder: str) -> FetchResult | Exception:
        TRACE.set(f"trace-{holder}")
        try:
            return await batcher.fetch(_request(holder, record(holder)))
        except PermissionDenied as exc:
            return exc

    async def main() -> list[FetchResult | Exception]:
        return await asyncio.gather(*(call(h) for h in ["a", "b", "bad", "c", "d", "e"] * 5))

    try:
        outcomes = asyncio.run(main())
    finally:
        batcher.close()
    assert [isinstance(o, PermissionDenied) for o in outcomes] == [
        h == "bad" for h in ["a", "b", "bad", "c", "d", "e"] * 5
    ]
    assert sum(len(b) for b in vault.batches) == 30
    assert len(vault.batches) < 30  # queued while the first batch ran
    assert vault.threads == {"zhida-licence-fetch"}
    assert seen == {h: f"trace-{h}" for h in "abcde"}


def test_a_request_past_its_deadline_is_not_run() -> None:
    vault = FakeVault()
    batcher = FetchBatcher(vault.fetch_many)

    async def main() -> None:
        DEADLINE.set(time.monotonic() - 1)
        await batcher.fetch(_request("late"))

    try:
        with pytest.raises(DeadlineExceeded):
            asyncio.run(main())
    finally:
        batcher.close()
    assert vault.batches == []


def test_a_failed_batch_fails_each_of_its_fetches() -> None:
    def broken(requests: Sequence[FetchRequest]) -> list[FetchResult | Exception]:
        raise RuntimeError("database gone")

    batcher = FetchBatcher(broken)

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(batcher.fetch(_request(h)) for h in "abc"), return_exceptions=True
        )

    try:
        outcomes = asyncio.run(main())
    finally:
        batcher.close()
    assert [type(o) for o in outcomes] == [RuntimeError] * 3


def test_fetch_annotation_matches_the_wire_message() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from licence_vault.model import FetchBasis, LicenceStatus, UseRecord
    from licence_vault.service_access import _annotation
    from licence_vault.wire import annotation_message

    for used_at in (
        datetime(2026, 12, 5, 1, 2, 3, 456789, tzinfo=UTC),
        datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=timezone(timedelta(hours=8))),
    ):
        use = UseRecord(
            annotation_id="a" * 32, licence_id="L1", holder_code="H", requester_org="O",
            requester_subject="s", matter_code="M", matter_name="事项", basis=FetchBasis.CONSENT,
            consent_id="c1", legal_basis="", used_at=used_at, use_until=used_at + timedelta(days=3),
            watermark="仅供 O 2026-12-05", status_at_use=LicenceStatus.VALID, pdf_digest=None,
        )  # fmt: skip
        assert _annotation(use) == annotation_message(use)
