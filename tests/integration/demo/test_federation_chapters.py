"""The federation chapters' own checks bite: a broken hop chain, a mixed caller, a wrong path.

The chapters themselves run in ``tests/integration/test_demo.py`` (the whole
story on the local federation); these are their checks on made-up input, and
:func:`zhida.demo.run` stopping every node when a chapter fails.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from zhida import demo
from zhida.audit.v1 import audit_service_pb2 as apb
from zhida.demo import DemoContext, DemoError, _chapters, national, trail
from zhida.demo.support import check_path, eventually

ORG = "114201020001300324"
GRANTED = set(national.GRANTED)


def _event(federation: str = "", action: str = "data.request", **details: str) -> apb.Event:
    if federation:
        details["federation"] = federation
    return apb.Event(action=action, organisation=ORG, subject="clerk-liu@ja-gov", details=details)


def _trail() -> dict[str, list[apb.Event]]:
    return {
        "420102": [_event("origin", next="420100", target_region="100000")],
        "420100": [_event("forward", peer="420102", next="420000", path="420102")],
        "420000": [_event("forward", peer="420100", next="100000", path="420102→420100")],
        "100000": [
            _event("serve", peer="420000", path="420102→420100→420000"),
            _event(action="data.release", items=",".join(national.GRANTED), records="1"),
        ],
    }


def test_a_consistent_trail_passes() -> None:
    trail._check_chain(_trail(), GRANTED)


def test_a_node_that_names_another_neighbour_fails_the_chapter() -> None:
    events = _trail()
    events["420000"] = [_event("forward", peer="420102", next="100000", path="420102")]
    with pytest.raises(DemoError, match="from 420102"):
        trail._check_chain(events, GRANTED)


def test_another_caller_at_one_node_fails_the_chapter() -> None:
    events = _trail()
    events["420100"][0].subject = "someone-else"
    with pytest.raises(DemoError, match="different callers"):
        trail._check_chain(events, GRANTED)


def test_a_release_of_items_never_granted_fails_the_chapter() -> None:
    events = _trail()
    events["100000"][1].details["items"] += ",迁出地"
    with pytest.raises(DemoError, match="release names"):
        trail._check_chain(events, GRANTED)


def test_a_call_that_took_another_path_fails_the_chapter() -> None:
    assert check_path("x", ["420102", "420100"], ["420102", "420100"]) == (
        "江岸区 420102 → 武汉市 420100"
    )
    with pytest.raises(DemoError, match="took the path"):
        check_path("RequestData", ["420102"], ["420102", "420100"])


def test_waiting_has_a_deadline() -> None:
    value, _ = eventually(lambda: 7, within=1, what="seven")
    assert value == 7
    with pytest.raises(DemoError, match="not within 0 s: never"):
        eventually(lambda: None, within=0.2, what="never")


def test_the_federation_chapters_come_before_the_access_log() -> None:
    modules = [fn.__module__.rsplit(".", 1)[-1] for _, fn in _chapters()]
    assert modules[0] == "foundation"
    assert modules[-1] == "audit"
    assert modules.index("national") < modules.index("trail") < modules.index("audit")
    assert modules.index("crossprovince") < modules.index("trail")


@pytest.mark.integration
def test_a_failing_chapter_stops_every_node_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exchange.federation.local import LocalFederation

    started: list[LocalFederation] = []

    def start(ctx: DemoContext) -> None:  # one node is enough to see it stopped
        ctx.federation = LocalFederation.start(tmp_path / "federation", ("100000",))
        started.append(ctx.federation)

    def fail(ctx: DemoContext) -> None:
        raise DemoError("the story went wrong")

    monkeypatch.setattr(demo, "_chapters", lambda: [("start", start), ("boom", fail)])
    text = io.StringIO()
    assert demo.run(tmp_path, Console(file=text, width=120)) == 1
    printed = text.getvalue()
    assert "demo failed: chapter 2 (boom): the story went wrong" in printed
    assert "drained, exit code 0" in printed
    (fed,) = started
    assert [node.proc.returncode for node in fed.nodes.values()] == [0]
