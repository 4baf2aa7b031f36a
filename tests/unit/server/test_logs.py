"""Structured log formatting: one JSON object per line, trace id from the call context."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zhida.config import LogConfig
from zhida.server.context import TRACE_ID
from zhida.server.logs import (
    BatchingStreamHandler,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    flush_logs,
)


def _record(
    msg: str = "hello %s", args: tuple[object, ...] = ("world",), **extra: object
) -> logging.LogRecord:
    record = logging.LogRecord("zhida.test", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_json_line_has_the_standard_fields_and_extras() -> None:
    record = _record(licence_id="L-1", count=3)
    record.created = 1_767_225_600.25  # 2026-01-01T00:00:00.250Z
    line = JsonFormatter("wuhan-jianghan").format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data == {
        "ts": "2026-01-01T00:00:00.250Z",
        "level": "warning",
        "logger": "zhida.test",
        "msg": "hello world",
        "trace_id": "",
        "node": "wuhan-jianghan",
        "pid": os.getpid(),
        "licence_id": "L-1",
        "count": 3,
    }


def test_trace_id_comes_from_the_call_context() -> None:
    token = TRACE_ID.set("trace-abc")
    try:
        data = json.loads(JsonFormatter("n").format(_record()))
    finally:
        TRACE_ID.reset(token)
    assert data["trace_id"] == "trace-abc"


def test_an_explicit_trace_id_wins_over_the_context() -> None:
    token = TRACE_ID.set("context-id")
    try:
        data = json.loads(JsonFormatter("n").format(_record(trace_id="explicit-id")))
    finally:
        TRACE_ID.reset(token)
    assert data["trace_id"] == "explicit-id"


def test_exceptions_are_one_json_line_with_the_traceback() -> None:
    try:
        raise ValueError("kaput")
    except ValueError:
        record = logging.LogRecord(
            "zhida.test", logging.ERROR, __file__, 1, "failed", (), exc_info=sys.exc_info()
        )
    line = JsonFormatter("n").format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["msg"] == "failed"
    assert "Traceback" in data["exc"]
    assert "ValueError: kaput" in data["exc"]


def test_non_json_values_and_unicode_are_kept_readable() -> None:
    data = json.loads(JsonFormatter("节点").format(_record("办件 %s", ("成功",), path=os.sep)))
    assert data["msg"] == "办件 成功"
    assert data["node"] == "节点"


def test_text_format_is_one_human_line() -> None:
    token = TRACE_ID.set("t-9")
    try:
        line = TextFormatter("n").format(_record(method="/a.B/C", code="OK"))
    finally:
        TRACE_ID.reset(token)
    assert line.endswith("WARNING zhida.test [t-9] hello world method=/a.B/C code=OK")


def test_configure_logging_installs_one_handler_with_level(restore_root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(LogConfig("warning", "json"), node="n1", stream=stream, batch=False)
    configure_logging(LogConfig("warning", "json"), node="n1", stream=stream, batch=False)
    log = logging.getLogger("zhida.unit")
    log.info("dropped")
    log.warning("kept", extra={"k": "v"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["k"] == "v"
    assert len(logging.getLogger().handlers) == 1


def test_configure_logging_text(restore_root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(LogConfig("debug", "text"), node="n1", stream=stream, batch=False)
    logging.getLogger("zhida.unit").debug("visible")
    assert "DEBUG zhida.unit [-] visible" in stream.getvalue()


def test_batching_handler_keeps_order_and_trace_ids(
    restore_root_logging: None, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl"
    with open(path, "w", encoding="utf-8") as stream:
        configure_logging(LogConfig("info", "json"), node="n1", stream=stream)
        log = logging.getLogger("zhida.unit")
        for i in range(3000):
            token = TRACE_ID.set(f"t-{i}")
            try:
                log.info("line %d", i, extra={"blob": "x" * (i % 50)})
            finally:
                TRACE_ID.reset(token)
        log.warning("last")  # WARNING writes everything queued, in order, at once
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["msg"] for r in records] == [f"line {i}" for i in range(3000)] + ["last"]
    assert [r["trace_id"] for r in records[:3000]] == [f"t-{i}" for i in range(3000)]


def test_batching_handler_writes_within_its_interval(restore_root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(LogConfig("info", "json"), node="n1", stream=stream)
    logging.getLogger("zhida.unit").info("soon")
    deadline = time.monotonic() + 5
    while "soon" not in stream.getvalue():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    flush_logs()


def test_batching_handler_drops_and_counts_when_the_stream_falls_behind() -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=60, max_pending=2)
    handler.setFormatter(JsonFormatter("n"))
    try:
        for i in range(5):
            handler.emit_fields("zhida.access", "rpc", f"t-{i}", {"i": i})
        assert handler.dropped == 3
        handler.flush()
    finally:
        handler.close()
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert records[0]["level"] == "warning"
    assert records[0]["dropped"] == 3
    assert [(r["trace_id"], r["i"]) for r in records[1:]] == [("t-0", 0), ("t-1", 1)]
