"""Dataset adapters: read a JSONL file of problems into queries (question + reference answer).

Three row formats are recognised from the first row's fields: MATH-500 (`problem`, `answer`),
GSM8K (`question`, and an `answer` whose final answer follows `#### `) and generic JSONL
(`question`, optional `answer`). `--question-field` / `--answer-field` override the field names.
Query ids are the 1-based line numbers of the rows, so they stay stable under `--limit` and
across resumed runs; with `--repeat K` a row yields K queries "17", "17#1", ... "17#K-1", each
with its own seed (the first repeat keeps the id and seed of an unrepeated run). A malformed row
is reported as `file:line: why` and either skipped with a warning or fatal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from spexlang.diagnostics import UserError

GSM8K_MARKER = "#### "
UTF8_BOM = b"\xef\xbb\xbf"
BUILTIN_SAMPLE = Path(__file__).parent / "data" / "arithmetic_sample.jsonl"


class DatasetFormat(Enum):
    """A row layout and how its reference answer is read."""

    MATH500 = "math500"  # problem, answer (LaTeX), plus solution/subject/level
    GSM8K = "gsm8k"  # question, answer = worked solution ending in "#### N"
    JSONL = "jsonl"  # question, optional answer (string or number)


class BadRowPolicy(Enum):
    """What a malformed row does to the run."""

    SKIP = "skip"  # warn with file:line and go on
    FAIL = "fail"  # stop with a UserError naming file:line


@dataclass(frozen=True)
class FieldMap:
    """Which fields hold the question and the reference answer, and how to read the answer."""

    format: DatasetFormat
    question: str
    answer: str
    answer_required: bool


@dataclass(frozen=True)
class DatasetQuery:
    """One query to run: a dataset row, possibly repeated under another seed."""

    query_id: str
    line: int
    repeat: int
    question: str
    reference: str | None
    seed: int


@dataclass(frozen=True)
class BadRow:
    """A row that could not be read; `render()` gives the `file:line: why` message."""

    path: str
    line: int
    reason: str

    def render(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class Dataset:
    """The queries read from one file, with the format used and the rows skipped."""

    path: str
    format: DatasetFormat
    fields: FieldMap
    queries: tuple[DatasetQuery, ...]
    skipped: tuple[BadRow, ...]
    rows: int  # distinct dataset rows used (before --repeat)


@dataclass(frozen=True)
class DatasetOptions:
    """How to read a dataset (the `spex run` flags that concern it)."""

    limit: int | None = None
    repeat: int = 1
    seed: int = 0
    question_field: str | None = None
    answer_field: str | None = None
    on_bad_row: BadRowPolicy = BadRowPolicy.SKIP


class _RowError(Exception):
    """A row is malformed; caught at the row's line and turned into a BadRow."""


class _MissingField(_RowError):
    """A row lacks the question or answer field; `field` is its name."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def query_seed(base_seed: int, line: int, repeat: int) -> int:
    """A stable 31-bit seed for one query: the same base seed, line and repeat give the same."""
    digest = hashlib.blake2b(f"{base_seed}:{line}:{repeat}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF


def query_id(line: int, repeat: int) -> str:
    return str(line) if repeat == 0 else f"{line}#{repeat}"


def detect_format(row: dict[str, Any]) -> DatasetFormat:
    """Guess a row layout from its fields (the first readable row decides for the file)."""
    if "problem" in row and "question" not in row:
        return DatasetFormat.MATH500
    answer = row.get("answer")
    if "question" in row and isinstance(answer, str) and GSM8K_MARKER in answer:
        return DatasetFormat.GSM8K
    return DatasetFormat.JSONL


def field_map(
    fmt: DatasetFormat, question_field: str | None = None, answer_field: str | None = None
) -> FieldMap:
    """The fields a format reads, with the user's overrides applied."""
    question, answer = (
        ("problem", "answer") if fmt is DatasetFormat.MATH500 else ("question", "answer")
    )
    return FieldMap(
        format=fmt,
        question=question_field or question,
        answer=answer_field or answer,
        # An explicitly named answer field must be there; generic rows may lack one.
        answer_required=fmt is not DatasetFormat.JSONL or answer_field is not None,
    )


def extract_reference(fields: FieldMap, row: dict[str, Any]) -> str | None:
    """The reference answer of a row, as text; raises _RowError when it is unusable."""
    if fields.answer not in row or row[fields.answer] is None:
        if fields.answer_required:
            if fields.answer in row:
                raise _RowError(f"field '{fields.answer}' is null")
            raise _missing_field(fields.answer, "--answer-field", row)
        return None
    value = row[fields.answer]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _RowError(
            f"field '{fields.answer}' must be a string or a number, not {_json_type(value)}"
        )
    text = str(value)
    if fields.format is DatasetFormat.GSM8K:
        if GSM8K_MARKER not in text:
            raise _RowError(f"field '{fields.answer}' has no final answer after '{GSM8K_MARKER}'")
        # The final answer is what follows the last marker; GSM8K writes 1,000 for 1000.
        text = text.rsplit(GSM8K_MARKER, 1)[1].strip().replace(",", "")
    return text.strip()


def extract_question(fields: FieldMap, row: dict[str, Any]) -> str:
    if fields.question not in row:
        raise _missing_field(fields.question, "--question-field", row)
    value = row[fields.question]
    if not isinstance(value, str):
        raise _RowError(f"field '{fields.question}' must be a string, not {_json_type(value)}")
    if not value.strip():
        raise _RowError(f"field '{fields.question}' is empty")
    return value


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names.update({list: "a list", dict: "an object", type(None): "null"})
    return names.get(type(value), type(value).__name__)


def _numbered_lines(path: Path) -> Iterator[tuple[int, str | _RowError]]:
    """The file's non-blank lines with their 1-based numbers. A line that is not UTF-8 comes as
    a _RowError (only that row is bad); a UTF-8 byte-order mark before line 1 is dropped.
    Unreadable files are UserErrors."""
    if not path.exists():
        raise UserError(f"dataset file not found: {path}")
    if path.is_dir():
        raise UserError(f"dataset path is a directory, not a JSONL file: {path}")
    try:
        with path.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                if number == 1 and raw.startswith(UTF8_BOM):
                    raw = raw[len(UTF8_BOM) :]
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield (
                        number,
                        _RowError(
                            f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
                        ),
                    )
                    continue
                if line.strip():
                    yield number, line
    except OSError as e:
        raise UserError(f"cannot read dataset {path}: {e.strerror}") from None


def _parse_object(line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise _RowError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise _RowError("JSON nested too deeply to read") from None
    if not isinstance(row, dict):
        raise _RowError(f"expected a JSON object, found {_json_type(row)}")
    return row


def _missing_field(name: str, flag: str, row: dict[str, Any]) -> _RowError:
    """A missing field, with the fields the row does have and the flag that names another."""
    present = ", ".join(f"'{k}'" for k in list(row)[:12]) or "none"
    return _MissingField(
        f"missing field '{name}' (the row has {present}; name the field with {flag})", name
    )


def load_dataset(path: str | Path, options: DatasetOptions = DatasetOptions()) -> Dataset:
    """Read a dataset file into queries. Raises UserError for a missing file, a fatal bad row
    (with `on_bad_row=FAIL`) or a file with no usable row."""
    if options.limit is not None and options.limit < 1:
        raise UserError(f"--limit must be at least 1, got {options.limit}")
    if options.repeat < 1:
        raise UserError(f"--repeat must be at least 1, got {options.repeat}")
    file = Path(path)
    shown = str(path)
    fields: FieldMap | None = None
    queries: list[DatasetQuery] = []
    skipped: list[BadRow] = []
    rows = 0
    for number, line in _numbered_lines(file):
        if options.limit is not None and rows >= options.limit:
            break
        try:
            if isinstance(line, _RowError):
                raise line
            row = _parse_object(line)
            if fields is None:
                fields = field_map(detect_format(row), options.question_field, options.answer_field)
            question = extract_question(fields, row)
            reference = extract_reference(fields, row)
        except _RowError as e:
            bad = BadRow(shown, number, str(e))
            if options.on_bad_row is BadRowPolicy.FAIL:
                raise UserError(
                    f"{bad.render()} (use --on-bad-row skip to skip bad rows)"
                ) from None
            skipped.append(bad)
            continue
        rows += 1
        for repeat in range(options.repeat):
            queries.append(
                DatasetQuery(
                    query_id=query_id(number, repeat),
                    line=number,
                    repeat=repeat,
                    question=question,
                    reference=reference,
                    seed=query_seed(options.seed, number, repeat),
                )
            )
    if fields is None or not queries:
        why = f"all {len(skipped)} rows are malformed" if skipped else "it has no rows"
        if skipped:
            why += f" (line {skipped[0].line}: {skipped[0].reason})"
        raise UserError(f"dataset {shown} has no usable rows: {why}")
    return Dataset(shown, fields.format, fields, tuple(queries), tuple(skipped), rows)
