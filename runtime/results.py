"""The results JSONL file: one row per query, appended and flushed the moment the query finishes.

Rows are `QueryResult.to_json()` objects. A run that dies (Ctrl-C, an engine gone) loses nothing
it finished. `--resume` reads the file back, keeps the rows whose status is "ok", and re-runs
every other query of the dataset. Before re-running, the file is rewritten atomically (a temporary
file renamed over it) to hold only the kept rows, so the finished file has exactly one row per
query. Readers tolerate a truncated last line (a row cut off mid-write) and, should a file ever
hold two rows for one query id, the later row wins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from runtime.records import QueryResult
from spexlang.diagnostics import UserError

STATUS_OK = "ok"
STATUS_FAILED = "failed"


@dataclass(frozen=True)
class ResultsFile:
    """What a results file holds: its rows by query id (the last row for an id wins)."""

    path: str
    rows: dict[str, QueryResult]
    unreadable_lines: tuple[int, ...]  # lines that were not result rows (ignored)
    truncated_last_line: bool


@dataclass(frozen=True)
class ResumePlan:
    """What a resumed run keeps and what it still has to run."""

    kept: tuple[QueryResult, ...]  # ok rows of queries in this run, in dataset order
    to_run: tuple[str, ...]  # query ids without an ok row, in dataset order
    retried_failed: int  # of to_run, how many had a failed row
    extra_rows: int  # ok rows for query ids not in this run (kept in the file as they are)


def result_from_json(row: object) -> QueryResult | None:
    """A QueryResult from a parsed row, or None when the row is not one (rows written before
    a field was added read with its default)."""
    return QueryResult.from_json(row)


def read_results(path: str | Path) -> ResultsFile:
    """Read a results file. Unparsable lines are listed, not fatal; raises UserError if the
    file cannot be read or has lines but not one result row (it is not a results file)."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return ResultsFile(str(path), {}, (), False)
    except OSError as e:
        raise UserError(f"cannot read results file {path}: {e.strerror}") from None
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    # A file written by ResultsWriter ends with "\n"; anything after the last one is a row cut off.
    tail = lines.pop() if lines else ""
    rows: dict[str, QueryResult] = {}
    bad: list[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        result = _parse_row(line)
        if result is None:
            bad.append(number)
        else:
            rows[result.query_id] = result
    truncated = bool(tail.strip())
    last = _parse_row(tail) if truncated else None
    if last is not None:  # complete JSON, only the newline is missing
        rows[last.query_id] = last
        truncated = False
    if bad and not rows:
        raise UserError(f"{path} is not a spex results file (line {bad[0]} is not a result row)")
    return ResultsFile(str(path), rows, tuple(bad), truncated)


def _parse_row(line: str) -> QueryResult | None:
    try:
        return result_from_json(json.loads(line))
    except json.JSONDecodeError:
        return None


def plan_resume(existing: ResultsFile, query_ids: Sequence[str], mode: str) -> ResumePlan:
    """Which queries a resumed run still has to run. Raises UserError when the file was written
    by a run of another mode (mixing modes would make its summary meaningless)."""
    wanted = set(query_ids)
    for result in existing.rows.values():
        if result.query_id in wanted and result.status == STATUS_OK and result.mode != mode:
            raise UserError(
                f"{existing.path} holds results of mode '{result.mode}', not '{mode}': "
                "resume with the same --mode, or write to another file with -o"
            )
    kept: list[QueryResult] = []
    to_run: list[str] = []
    retried = 0
    for qid in query_ids:
        row = existing.rows.get(qid)
        if row is not None and row.status == STATUS_OK:
            kept.append(row)
        else:
            to_run.append(qid)
            retried += row is not None
    extra = sum(
        1 for r in existing.rows.values() if r.status == STATUS_OK and r.query_id not in wanted
    )
    return ResumePlan(tuple(kept), tuple(to_run), retried, extra)


def check_questions(kept: Iterable[QueryResult], questions: dict[str, str], path: str) -> None:
    """Refuse to resume a file written for another dataset (same ids, other questions)."""
    for result in kept:
        if questions.get(result.query_id, result.question) != result.question:
            raise UserError(
                f"{path}: the row for query {result.query_id} has another question than the "
                "dataset's: resume with the same dataset, or write to another file with -o"
            )


def rewrite_atomically(path: str | Path, results: Iterable[QueryResult]) -> None:
    """Replace the file with exactly these rows, never leaving a half-written file behind."""
    file = Path(path)
    tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for result in results:
                f.write(_encode(result))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write results file {path}: {e.strerror}") from None


def _encode(result: QueryResult) -> str:
    return json.dumps(result.to_json(), ensure_ascii=False) + "\n"


class ResultsWriter:
    """Appends one row per finished query and flushes it at once. Use as a context manager."""

    def __init__(self, path: str | Path, *, append: bool) -> None:
        self.path = str(path)
        file = Path(path)
        if file.is_dir():
            raise UserError(f"-o {path} is a directory; give a .jsonl file name")
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] = file.open("a" if append else "w", encoding="utf-8")
        except OSError as e:
            raise UserError(f"cannot write results file {path}: {e.strerror}") from None
        self.written = 0

    def write(self, result: QueryResult) -> None:
        self._file.write(_encode(result))
        self._file.flush()  # the row survives a crash of this process from here on
        self.written += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
