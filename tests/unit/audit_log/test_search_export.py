"""Search with holder hashing and page tokens; JSON Lines export with checkable proofs."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import replace

import pytest

from audit_log.errors import ProofError
from audit_log.events import Action
from audit_log.export import check_record, export_range, write_jsonl
from audit_log.log import AuditLog
from audit_log.search import SearchRequest, search_events
from tests.unit.audit_log.conftest import ORGS, T0, make_event
from zhida.errors import FailedPrecondition, InvalidArgument

HOLDER = "42010219900101001X"


@pytest.fixture
def log(make_log: Callable[..., AuditLog]) -> AuditLog:
    audit = make_log()
    ref = audit.holder_ref(HOLDER)
    events = [make_event(i, holder_ref=ref) if i % 6 == 0 else make_event(i) for i in range(40)]
    audit.sequencer.append_many(events, timeout=30)
    return audit


def _pages(log: AuditLog, request: SearchRequest) -> list[list[int]]:
    pages = []
    while True:
        page = search_events(log, request)
        pages.append([e.index for e in page.events])
        if not page.next_page_token:
            return pages
        request = replace(request, page_token=page.next_page_token)


def test_holder_search_hashes_the_id(log: AuditLog) -> None:
    page = search_events(log, SearchRequest(holder_id=HOLDER.lower()))
    assert [e.index for e in page.events] == list(range(0, 40, 6))
    assert HOLDER not in page.events[0].leaf.decode()


def test_paging_is_stable_and_complete(log: AuditLog) -> None:
    request = SearchRequest(organisation=ORGS[0], page_size=4)
    pages = _pages(log, request)
    assert [i for p in pages for i in p] == list(range(0, 40, 3))
    assert all(len(p) == 4 for p in pages[:-1])
    backwards = _pages(log, replace(request, newest_first=True))
    assert [i for p in backwards for i in p] == list(range(39, -1, -3))


def test_bad_page_tokens_and_sizes_name_the_field(log: AuditLog) -> None:
    first = search_events(log, SearchRequest(organisation=ORGS[0], page_size=2))
    cases = [
        SearchRequest(organisation=ORGS[1], page_size=2, page_token=first.next_page_token),
        SearchRequest(page_token="garbage!"),
        SearchRequest(page_token="eyJ2IjoxfQ"),  # {"v":1}: no cursor
        SearchRequest(page_size=1001),
        SearchRequest(since=T0, until=T0),
    ]
    fields = []
    for request in cases:
        with pytest.raises(InvalidArgument) as info:
            search_events(log, request)
        fields.append(info.value.violations[0].field)
    assert fields == ["page_token", "page_token", "page_token", "page_size", "to_time"]


def test_action_and_time_filters(log: AuditLog) -> None:
    page = search_events(
        log,
        SearchRequest(actions=(Action.CONSENT_GIVE,), since=T0.replace(second=10),
                      until=T0.replace(second=20)),
    )  # fmt: skip
    assert [e.index for e in page.events] == [11, 14, 17]


def test_export_with_proofs_checks_against_the_checkpoint(log: AuditLog) -> None:
    with pytest.raises(FailedPrecondition):
        export_range(log, 0)
    signed = log.publish_checkpoint()
    out = io.StringIO()
    assert write_jsonl(log, out, start=5, end=25) == 20
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    header, records = lines[0], lines[1:]
    assert header["type"] == "checkpoint"
    assert header["note"] == signed.note
    assert [r["index"] for r in records] == list(range(5, 25))
    assert records[0]["event"]["subject"] == "clerk-0"
    for record in records:
        check_record(record, signed.checkpoint.root_hash)
    records[3]["leaf"] = records[4]["leaf"]
    with pytest.raises(ProofError):
        check_record(records[3], signed.checkpoint.root_hash)


def test_export_ranges_are_checked(log: AuditLog) -> None:
    log.publish_checkpoint()
    for start, end, field in [(0, 41, "end"), (30, 30, "start"), (35, 20, "start")]:
        with pytest.raises(InvalidArgument) as info:
            export_range(log, start, end)
        assert info.value.violations[0].field == field
    _, records = export_range(log, 38)
    assert [r.entry.index for r in records] == [38, 39]
