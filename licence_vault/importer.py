"""Legacy import (存量证照电子化): historical licences from a CSV file, in batches, resumable.

The CSV file (UTF-8, with or without BOM) has a header row. The columns
``type`` (licence type code or name), ``holder_code`` and ``holder_name`` are
required; ``issue_date``, ``valid_from``, ``valid_until`` (YYYY-MM-DD),
``matter_code``, ``matter_name`` and ``request_id`` are optional; every other
column is a field of the licence's face (照面信息) by its name, so one file can
hold several types, each row filling only its type's columns.

Each row's request id is its ``request_id`` column or, when absent,
``csv-<SHA-256 of the row's non-empty cells>``: the same row always asks for
the same licence, so running an import again — after a crash, a Ctrl-C, or
on purpose — issues nothing twice. A state file next to the CSV
(``<file>.import-state.json``) remembers how many rows are done, so a resumed
run starts where the last one stopped; rows refused by the vault go to an
error report (``<file>.errors.csv``: row number, request id, reason, message,
fields) and the import carries on. A batch's report rows are written (and
synced) before the state that counts the batch as done; the state records the
report's length then, and a resumed run cuts the report back to it — so a
crash between the two neither loses nor repeats a report row.

Example::

    importer = CsvImport(Path("legacy.csv"))
    summary = importer.run(send_batch, batch_size=200, on_progress=bar.update)
    print(summary.issued, summary.existing, summary.failed)
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from licence_vault.model import IssueRequest
from licence_vault.types import TypeRegistry
from zhida.errors import InvalidArgument, ZhidaError
from zhida.files import atomic_write

__all__ = ["CsvImport", "ImportSummary", "RowOutcome", "RowRequest"]

FIXED_COLUMNS = (
    "request_id",
    "type",
    "holder_code",
    "holder_name",
    "issue_date",
    "valid_from",
    "valid_until",
    "matter_code",
    "matter_name",
)
REQUIRED_COLUMNS = ("type", "holder_code", "holder_name")
STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class RowRequest:
    row: int  # 1-based data row number (the header is row 0)
    request: IssueRequest


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """What the vault said about one row."""

    row: int
    request_id: str
    licence_id: str = ""
    created: bool = False
    error_reason: str = ""
    error_message: str = ""
    error_fields: tuple[str, ...] = ()


@dataclass
class ImportSummary:
    total: int = 0
    skipped: int = 0  # done by an earlier run (state file)
    issued: int = 0
    existing: int = 0  # issued by an earlier, interrupted run
    failed: int = 0
    error_report: Path | None = None
    failures: list[RowOutcome] = field(default_factory=list)


def _row_id(cells: dict[str, str]) -> str:
    items = sorted((k, v.strip()) for k, v in cells.items() if v and v.strip())
    text = json.dumps(items, ensure_ascii=False, separators=(",", ":"))
    return "csv-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def _date(text: str) -> date | None:
    text = (text or "").strip()
    return date.fromisoformat(text) if text else None


class CsvImport:
    """One CSV file being imported; see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        types: TypeRegistry | None = None,
        state_path: Path | None = None,
        report_path: Path | None = None,
    ) -> None:
        self.path = path
        self.types = types or TypeRegistry.builtin()
        self.state_path = state_path or path.with_name(path.name + ".import-state.json")
        self.report_path = report_path or path.with_name(path.name + ".errors.csv")

    # -- reading --------------------------------------------------------------------------

    def file_digest(self) -> str:
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def count_rows(self) -> int:
        with self.path.open(encoding="utf-8-sig", newline="") as handle:
            return max(0, sum(1 for _ in csv.reader(handle)) - 1)

    def rows(self) -> Iterator[RowRequest | RowOutcome]:
        """Each data row as an issue request, or as a refusal when it cannot become one."""
        with self.path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise InvalidArgument(
                    f"{self.path}: the header lacks the column(s) {', '.join(missing)}",
                    reason="INVALID_CSV",
                )
            for number, raw in enumerate(reader, start=1):
                cells = {k: (v or "") for k, v in raw.items() if k is not None}
                request_id = cells.get("request_id", "").strip() or _row_id(cells)
                try:
                    yield RowRequest(number, self._request(cells, request_id))
                except (ZhidaError, ValueError) as exc:
                    reason = exc.reason if isinstance(exc, ZhidaError) else "INVALID_CSV_ROW"
                    message = exc.message if isinstance(exc, ZhidaError) else str(exc)
                    yield RowOutcome(number, request_id, error_reason=reason, error_message=message)

    def _request(self, cells: dict[str, str], request_id: str) -> IssueRequest:
        licence_type = self.types.resolve(cells["type"].strip(), "type")
        data = {
            k: v.strip()
            for k, v in cells.items()
            if k not in FIXED_COLUMNS and v and v.strip() and licence_type.field(k) is not None
        }
        return IssueRequest(
            request_id=request_id,
            type_code=licence_type.code,
            holder_code=cells["holder_code"].strip(),
            holder_name=cells["holder_name"].strip(),
            data=data,
            issue_date=_date(cells.get("issue_date", "")),
            valid_from=_date(cells.get("valid_from", "")),
            valid_until=_date(cells.get("valid_until", "")),
            matter_code=cells.get("matter_code", "").strip(),
            matter_name=cells.get("matter_name", "").strip(),
        )

    # -- state ------------------------------------------------------------------------------

    def _state(self, digest: str) -> dict[str, object]:
        """The state an earlier run of this very file left ({} if none or changed)."""
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            return {}
        return state if state.get("file_sha256") == digest else {}

    def load_state(self, digest: str) -> int:
        """Rows already done by an earlier run of this very file (0 if none or changed)."""
        done = self._state(digest).get("done_rows", 0)
        return done if isinstance(done, int) and done >= 0 else 0

    def _trim_report(self, digest: str) -> None:
        """Drop report rows written after the last saved state (their batch is sent again)."""
        length = self._state(digest).get("report_bytes")
        if not isinstance(length, int) or length < 0:
            return  # a state from before lengths were recorded: keep the report as it is
        try:
            with self.report_path.open("r+b") as f:
                if f.seek(0, os.SEEK_END) > length:
                    f.truncate(length)
                    os.fsync(f.fileno())
        except FileNotFoundError:
            pass

    def save_state(self, digest: str, done_rows: int, summary: ImportSummary) -> None:
        state = {
            "version": STATE_VERSION,
            "file": str(self.path),
            "file_sha256": digest,
            "done_rows": done_rows,
            "issued": summary.issued,
            "existing": summary.existing,
            "failed": summary.failed,
            # the report as it stood when these rows were done (see _trim_report)
            "report_bytes": self.report_path.stat().st_size if self.report_path.exists() else 0,
        }
        # Durable before the next batch starts: a crash resumes from here, no duplicates.
        atomic_write(self.state_path, json.dumps(state, indent=2).encode(), mode=0o644)

    def _report(self, outcomes: Sequence[RowOutcome], fresh: bool) -> None:
        new_file = fresh or not self.report_path.exists()
        with self.report_path.open("w" if new_file else "a", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(["row", "request_id", "reason", "message", "fields"])
            for o in outcomes:
                writer.writerow(
                    [o.row, o.request_id, o.error_reason, o.error_message, ";".join(o.error_fields)]
                )
            f.flush()
            os.fsync(f.fileno())  # on disk before the state that counts these rows as done

    # -- running ------------------------------------------------------------------------------

    def run(
        self,
        send: Callable[[Sequence[RowRequest]], Sequence[RowOutcome]],
        *,
        batch_size: int = 200,
        on_progress: Callable[[int, ImportSummary], None] | None = None,
        restart: bool = False,
    ) -> ImportSummary:
        """Import every row not done yet; ``send`` issues one batch and reports each row.

        The state is saved after every batch, so an interruption (exception,
        KeyboardInterrupt) loses at most the batch in flight — which the next
        run sends again and the vault recognises by its request ids.
        """
        if not 1 <= batch_size <= 1000:
            raise InvalidArgument("batch size must be 1..1000", reason="INVALID_BATCH_SIZE")
        digest = self.file_digest()
        done = 0 if restart else self.load_state(digest)
        summary = ImportSummary(total=self.count_rows(), skipped=done)
        summary.error_report = self.report_path
        fresh_report = done == 0
        if fresh_report:
            self.report_path.unlink(missing_ok=True)
        else:
            self._trim_report(digest)
        batch: list[RowRequest] = []
        early: list[RowOutcome] = []
        last_row = done

        def flush() -> None:
            nonlocal batch, early, last_row, fresh_report
            outcomes = list(early) + (list(send(batch)) if batch else [])
            failures = [o for o in outcomes if o.error_reason]
            for o in outcomes:
                if o.error_reason:
                    summary.failed += 1
                elif o.created:
                    summary.issued += 1
                else:
                    summary.existing += 1
            if failures:
                self._report(sorted(failures, key=lambda o: o.row), fresh_report)
                fresh_report = False
                summary.failures.extend(failures[: max(0, 100 - len(summary.failures))])
            self.save_state(digest, last_row, summary)
            if on_progress is not None:
                on_progress(len(outcomes), summary)
            batch, early = [], []

        for item in self.rows():
            row = item.row
            if row <= done:
                continue
            if isinstance(item, RowOutcome):
                early.append(item)
            else:
                batch.append(item)
            last_row = row
            if len(batch) + len(early) >= batch_size:
                flush()
        if batch or early:
            flush()
        elif not self.state_path.exists():
            self.save_state(digest, last_row, summary)
        return summary
