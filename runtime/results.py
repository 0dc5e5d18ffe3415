"""The results JSONL file: one row per query, appended and flushed the moment the query finishes.

Rows are `QueryResult.to_json()` objects. A run that dies (Ctrl-C, an engine gone) loses nothing
it finished. `--resume` reads the file back, keeps the rows whose status is "ok", and re-runs
every other query of the dataset. Before re-running, the file is rewritten atomically (a temporary
file renamed over it) to hold only the kept rows, so the finished file has exactly one row per
query. Readers tolerate a truncated last line (a row cut off mid-write) and, should a file ever
hold two rows for one query id, the later row wins.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from runtime.records import QueryResult
from spexlang.diagnostics import UserError

STATUS_OK = "ok"
STATUS_FAILED = "failed"
_FIELDS = {f.name for f in fields(QueryResult)}
_HINTS = get_type_hints(QueryResult)


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
    """A QueryResult from a parsed row, or None when the row is not one: a field is missing or
    has the wrong type (`"latency_s": "abc"`, a NaN count) — such a row is re-run, not trusted.
    Rows written before a field was added read with its default."""
    if not isinstance(row, dict):
        return None
    if not all(_conforms(row[k], _HINTS[k]) for k in _FIELDS if k in row):
        return None
    try:
        return QueryResult.from_json(row)
    except (TypeError, ValueError):
        return None


def _conforms(value: object, hint: Any) -> bool:
    """Whether a JSON value fits a field's annotation (lenient for types it does not know)."""
    origin = get_origin(hint)
    if origin in (Union, UnionType):
        return any(_conforms(value, arg) for arg in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, list)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def read_results(path: str | Path) -> ResultsFile:
    """Read a results file. Unparsable lines are listed, not fatal; raises UserError if the
    file cannot be read or has lines but not one result row (it is not a results file)."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return ResultsFile(str(path), {}, (), False)
    except IsADirectoryError:
        raise UserError(f"-o {path} is a directory; give a .jsonl file name") from None
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
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
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


class ResultsWriteError(UserError):
    """A row could not be appended (a full disk): the file still ends with a whole row."""


class ResultsWriter:
    """Appends one row per finished query, each with one write to an O_APPEND descriptor: a row
    is on disk (in the page cache) as soon as `write` returns, and a write that fails part-way
    (ENOSPC) is cut back off, so the file never ends in a partial row. A context manager."""

    def __init__(self, path: str | Path, *, append: bool) -> None:
        self.path = str(path)
        file = Path(path)
        if file.is_dir():
            raise UserError(f"-o {path} is a directory; give a .jsonl file name")
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC | os.O_APPEND)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(file, flags, 0o644)
        except OSError as e:
            raise UserError(f"cannot write results file {path}: {e.strerror}") from None
        self.written = 0

    def write(self, result: QueryResult) -> None:
        if self._fd is None:
            raise ResultsWriteError(f"results file {self.path} is closed")
        data = _encode(result).encode("utf-8")
        start = _end_offset(self._fd)
        done = 0
        try:
            while done < len(data):
                n = os.write(self._fd, data[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
        except OSError as e:
            if done and start is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)  # drop the partial row
            kept = f"; the {self.written} rows written before are intact" if self.written else ""
            raise ResultsWriteError(
                f"cannot write results file {self.path}: {e.strerror or e}{kept}"
            ) from None
        self.written += 1

    def close(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):  # a pipe or a device cannot be synced
            os.fsync(fd)
        os.close(fd)

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _end_offset(fd: int) -> int | None:
    """Where an appended row starts, for a regular file (None for a pipe or a device)."""
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None
