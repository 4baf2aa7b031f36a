"""Structured logging: one JSON object per line (or plain text), trace id on every line.

:func:`configure_logging` installs one stderr handler on the root logger. In
``json`` format each line is an object with ``ts`` (UTC, ISO 8601, ms),
``level``, ``logger``, ``msg``, ``trace_id`` (of the call being served, from
:data:`zhida.server.context.TRACE_ID`, ``""`` outside a call), ``node``,
``pid``, then every ``extra=`` field of the call, and ``exc`` with the
traceback when one was logged. ``text`` format prints the same on one line for
people.

Example::

    import logging
    from zhida.config import LogConfig
    from zhida.server.logs import configure_logging

    configure_logging(LogConfig("info", "json"), node="wuhan-jianghan")
    logging.getLogger("zhida.demo").info("hello", extra={"licence_id": "L-1"})
    # {"ts": "2025-05-01T08:00:00.123Z", "level": "info", "logger": "zhida.demo",
    #  "msg": "hello", "trace_id": "", "node": "wuhan-jianghan", "pid": 4242,
    #  "licence_id": "L-1"}
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

from zhida.config import LogConfig
from zhida.server.context import TRACE_ID

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName", "trace_id"}
)
_ROOT = logging.getLogger()
# An access line before it is formatted: created, level name, logger, msg, trace id, extras.
_Fields = tuple[float, str, str, str, str, dict[str, Any]]
ATOMIC_WRITE = 4096  # PIPE_BUF: a write this small to a pipe is never interleaved
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


_last_second: list[Any] = [-1, ""]  # the last whole second formatted, and its text


def _timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    last = _last_second
    if last[0] != seconds:  # strftime once per second, not once per line
        last[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        last[0] = seconds
    return f"{last[1]}.{millis:03d}Z"


def _trace_id(record: logging.LogRecord) -> str:
    explicit = record.__dict__.get("trace_id")
    return explicit if isinstance(explicit, str) and explicit else TRACE_ID.get()


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node
        self.pid = os.getpid()
        self._encode = json.JSONEncoder(ensure_ascii=False, default=str).encode

    def format(self, record: logging.LogRecord) -> str:
        exc = None
        if record.exc_info:
            exc = self.formatException(record.exc_info)
        elif record.exc_text:
            exc = record.exc_text
        return self.format_fields(
            record.created, record.levelname, record.name, record.getMessage(),
            _trace_id(record), _extras(record), exc, record.stack_info,
        )  # fmt: skip

    def format_fields(
        self,
        created: float,
        levelname: str,
        name: str,
        msg: str,
        trace_id: str,
        extras: dict[str, Any],
        exc: str | None = None,
        stack: str | None = None,
    ) -> str:
        """The line for these parts (also used for access lines that never became records)."""
        out: dict[str, Any] = {
            "ts": _timestamp(created),
            "level": levelname.lower(),
            "logger": name,
            "msg": msg,
            "trace_id": trace_id,
            "node": self.node,
            "pid": self.pid,
        }
        for key, value in extras.items():
            out.setdefault(key, value)
        if exc:
            out["exc"] = exc
        if stack:
            out["stack"] = stack
        return self._encode(out)


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger [trace] msg key=value ...`` on one line (plus any traceback)."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        exc = self.formatException(record.exc_info) if record.exc_info else None
        return self.format_fields(
            record.created, record.levelname, record.name, record.getMessage(),
            _trace_id(record), _extras(record), exc, record.stack_info,
        )  # fmt: skip

    def format_fields(
        self,
        created: float,
        levelname: str,
        name: str,
        msg: str,
        trace_id: str,
        extras: dict[str, Any],
        exc: str | None = None,
        stack: str | None = None,
    ) -> str:
        parts = [_timestamp(created), levelname, name, f"[{trace_id or '-'}]", msg]
        parts.extend(f"{k}={v}" for k, v in extras.items())
        line = " ".join(parts)
        for block in (exc, stack):
            if block:
                line += "\n" + block
        return line


def make_formatter(log_cfg: LogConfig, node: str) -> logging.Formatter:
    """The formatter ``log.format`` asks for."""
    return JsonFormatter(node) if log_cfg.format == "json" else TextFormatter(node)


class BatchingStreamHandler(logging.Handler):
    """Writes records in batches from a background thread, one ``write`` per batch.

    ``emit`` only queues the record (noting the call's trace id), so the event
    loop neither formats access lines nor blocks on the stream; every
    ``interval`` seconds a daemon thread formats what is queued and writes it.
    WARNING and above are written at once (after what is queued, in order).
    Batches go out in chunks of whole lines of at most :data:`ATOMIC_WRITE`
    bytes, so lines of processes sharing the stream (``--workers``) never
    interleave. :meth:`flush` (also at exit) writes everything pending. When
    the stream cannot keep up (a stuck pipe), lines beyond ``max_pending`` are
    dropped and counted, instead of growing without bound.
    """

    def __init__(self, stream: TextIO, interval: float = 0.05, max_pending: int = 100_000) -> None:
        super().__init__()
        self.stream = stream
        self.interval = interval
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: collections.deque[logging.LogRecord | _Fields] = collections.deque()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zhida-log", daemon=True)
        self._thread.start()

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock per record: deque.append is atomic.
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if not record.__dict__.get("trace_id"):
            record.trace_id = TRACE_ID.get()  # formatted later, in another thread
        if len(self._pending) >= self.max_pending and record.levelno < logging.WARNING:
            self.dropped += 1
            return
        self._pending.append(record)
        if record.levelno >= logging.WARNING:
            self.flush()

    def emit_fields(self, name: str, msg: str, trace_id: str, extras: dict[str, Any]) -> None:
        """Queue an INFO line without making a LogRecord (the access log's hot path)."""
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending.append((time.time(), "INFO", name, msg, trace_id, extras))

    def _format_item(self, item: logging.LogRecord | _Fields) -> str:
        if isinstance(item, logging.LogRecord):
            return self.format(item)
        formatter = self.formatter
        if isinstance(formatter, JsonFormatter | TextFormatter):
            return formatter.format_fields(*item)
        created, levelname, name, msg, trace_id, extras = item
        record = logging.makeLogRecord(
            {"name": name, "msg": msg, "levelname": levelname,
             "levelno": _LEVELS.get(levelname.lower(), logging.INFO),
             "created": created, "trace_id": trace_id, **extras}
        )  # fmt: skip
        return self.format(record)

    def flush(self) -> None:
        with self.lock or contextlib.nullcontext():
            lines: list[str] = []
            if self.dropped:
                dropped, self.dropped = self.dropped, 0
                lines.append(
                    self._format_item(
                        (time.time(), "WARNING", "zhida.server.logs",
                         f"log output fell behind: {dropped} lines dropped", "",
                         {"dropped": dropped})
                    )
                )  # fmt: skip
            pending = self._pending
            while pending:
                item = pending.popleft()
                try:
                    lines.append(self._format_item(item))
                except Exception:
                    if isinstance(item, logging.LogRecord):
                        self.handleError(item)
            if lines:
                self._write(lines)

    def _write(self, lines: list[str]) -> None:
        try:
            fileno = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            self.stream.write("".join(f"{line}\n" for line in lines))
            self.stream.flush()
            return
        self.stream.flush()  # whatever else was written to it goes first
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            data = f"{line}\n".encode("utf-8", "backslashreplace")
            if chunk and size + len(data) > ATOMIC_WRITE:
                _write_all(fileno, b"".join(chunk))
                chunk, size = [], 0
            chunk.append(data)
            size += len(data)
        if chunk:
            _write_all(fileno, b"".join(chunk))

    def _run(self) -> None:
        while not self._closed.wait(self.interval):
            if self._pending:
                with contextlib.suppress(Exception):
                    self.flush()

    def close(self) -> None:
        self._closed.set()
        self.flush()
        super().close()


def fast_sink(logger: logging.Logger) -> BatchingStreamHandler | None:
    """The handler ``logger``'s INFO lines can go to directly, if that changes nothing.

    That is when the root's one handler is a :class:`BatchingStreamHandler`
    without filters and ``logger`` has no handlers or filters of its own
    (pytest's ``caplog``, for one, adds a handler: then this returns None).
    """
    handlers = _ROOT.handlers
    if len(handlers) != 1 or logger.handlers or logger.filters or not logger.propagate:
        return None
    handler = handlers[0]
    if type(handler) is not BatchingStreamHandler or handler.filters:
        return None
    if handler.level > logging.INFO:
        return None
    return handler


def _write_all(fileno: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fileno, view)
        except InterruptedError:
            continue
        view = view[written:]


def configure_logging(
    log_cfg: LogConfig, node: str, stream: TextIO | None = None, *, batch: bool = True
) -> None:
    """Send every log record to ``stream`` (stderr) in the configured format and level.

    ``batch`` (the server's choice) writes through a :class:`BatchingStreamHandler`;
    otherwise each record is written as it is logged. Replaces the root
    logger's handlers, so calling it again (e.g. in a worker process) is safe.
    """
    target = stream if stream is not None else sys.stderr
    handler = BatchingStreamHandler(target) if batch else logging.StreamHandler(target)
    handler.setFormatter(make_formatter(log_cfg, node))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(log_cfg.level, logging.INFO))
    logging.captureWarnings(True)
    # Nothing zhida logs shows thread or process names: don't pay for them per record.
    logging.logThreads = False
    logging.logMultiprocessing = False
    # Libraries that log a line per request at INFO would drown the access log.
    for noisy in ("urllib3", "minio", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def flush_logs() -> None:
    """Write every queued log record now (before exiting, say)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
