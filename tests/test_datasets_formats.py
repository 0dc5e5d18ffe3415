"""Dataset adapters: each format, field overrides, bad rows (skip vs fail), limit and repeat ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.datasets import (
    BadRowPolicy,
    DatasetFormat,
    DatasetOptions,
    load_dataset,
    query_seed,
)
from spexlang.diagnostics import UserError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.skipif(not (SHARED_DATA / "math500.jsonl").exists(), reason="shared data absent")
def test_math500_rows_map_problem_and_latex_answer() -> None:
    ds = load_dataset(SHARED_DATA / "math500.jsonl", DatasetOptions(limit=3))
    assert ds.format is DatasetFormat.MATH500
    assert [q.query_id for q in ds.queries] == ["1", "2", "3"]
    first = ds.queries[0]
    assert first.question.startswith("Convert the point $(0,3)$")
    assert first.reference == "\\left( 3, \\frac{\\pi}{2} \\right)"


@pytest.mark.skipif(not (SHARED_DATA / "gsm8k_test.jsonl").exists(), reason="shared data absent")
def test_gsm8k_reference_is_the_text_after_the_marker() -> None:
    ds = load_dataset(SHARED_DATA / "gsm8k_test.jsonl", DatasetOptions(limit=2))
    assert ds.format is DatasetFormat.GSM8K
    assert [q.reference for q in ds.queries] == ["18", "3"]
    assert ds.queries[0].question.startswith("Janet")


def test_gsm8k_thousands_separator_is_dropped(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "work\n#### 1,250"}])
    assert load_dataset(f).queries[0].reference == "1250"


def test_generic_jsonl_numbers_and_missing_answers(tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"question": "2+2?", "answer": 4},
            {"question": "no answer"},
            {"question": "x", "answer": 0.5},
        ],
    )
    ds = load_dataset(f)
    assert ds.format is DatasetFormat.JSONL
    assert [(q.question, q.reference) for q in ds.queries] == [
        ("2+2?", "4"),
        ("no answer", None),
        ("x", "0.5"),
    ]


def test_field_overrides(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "What is 1+1?", "target": "2"}])
    ds = load_dataset(f, DatasetOptions(question_field="prompt", answer_field="target"))
    assert (ds.queries[0].question, ds.queries[0].reference) == ("What is 1+1?", "2")


def test_explicit_answer_field_must_be_present(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", [{"question": "q"}])
    with pytest.raises(UserError, match=r"d\.jsonl:1: missing field 'target'"):
        load_dataset(f, DatasetOptions(answer_field="target", on_bad_row=BadRowPolicy.FAIL))


BAD_FILE = [
    {"question": "good one", "answer": "1"},
    "{not json",
    {"question": 7, "answer": "2"},
    "",
    {"answer": "3"},
    '["a", "list"]',
    {"question": "good two", "answer": [1, 2]},
    {"question": "good three", "answer": "3"},
]


def test_bad_rows_are_skipped_with_file_and_line(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "bad.jsonl", BAD_FILE)
    ds = load_dataset(f)
    assert [q.query_id for q in ds.queries] == ["1", "8"]
    rendered = [b.render() for b in ds.skipped]
    assert rendered == [
        f"{f}:2: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        f"{f}:3: field 'question' must be a string, not a number",
        f"{f}:5: missing field 'question' (the row has 'answer'; name the field with "
        "--question-field)",
        f"{f}:6: expected a JSON object, found a list",
        f"{f}:7: field 'answer' must be a string or a number, not a list",
    ]


def test_bad_row_is_fatal_with_fail_policy(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "bad.jsonl", BAD_FILE)
    with pytest.raises(UserError) as e:
        load_dataset(f, DatasetOptions(on_bad_row=BadRowPolicy.FAIL))
    assert e.value.message.startswith(f"{f}:2: not valid JSON")
    assert "--on-bad-row skip" in e.value.message


def test_gsm8k_row_without_final_answer_is_bad(tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "g.jsonl",
        [{"question": "a", "answer": "x\n#### 1"}, {"question": "b", "answer": "no marker"}],
    )
    ds = load_dataset(f)
    assert [b.render() for b in ds.skipped] == [
        f"{f}:2: field 'answer' has no final answer after '#### '"
    ]


def test_limit_repeat_ids_and_seeds(tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "d.jsonl", [{"question": f"q{i}", "answer": str(i)} for i in range(5)]
    )
    ds = load_dataset(f, DatasetOptions(limit=2, repeat=3, seed=7))
    assert [q.query_id for q in ds.queries] == ["1", "1#1", "1#2", "2", "2#1", "2#2"]
    assert ds.rows == 2
    assert len({q.seed for q in ds.queries}) == 6
    single = load_dataset(f, DatasetOptions(limit=2, seed=7))
    # The first repeat is the unrepeated query: same id, same seed (so --resume can grow --repeat).
    assert [(q.query_id, q.seed) for q in single.queries] == [
        (q.query_id, q.seed) for q in ds.queries if q.repeat == 0
    ]
    assert query_seed(7, 1, 0) != query_seed(8, 1, 0)


def test_limit_counts_good_rows_and_ids_follow_line_numbers(tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "d.jsonl", ["{bad", "", {"question": "a"}, {"question": "b"}, "{bad"]
    )
    ds = load_dataset(f, DatasetOptions(limit=2))
    assert [q.query_id for q in ds.queries] == ["3", "4"]
    assert [b.line for b in ds.skipped] == [1]  # rows after the limit are not read


def test_missing_file_and_empty_file_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"dataset file not found: .*nope\.jsonl"):
        load_dataset(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match="has no usable rows: it has no rows"):
        load_dataset(empty)
    with pytest.raises(UserError, match="is a directory"):
        load_dataset(tmp_path)


def test_all_rows_bad_is_an_error(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", ["{x", "[1]"])
    with pytest.raises(UserError, match="no usable rows: all 2 rows are malformed"):
        load_dataset(f)


def test_bad_limit_and_repeat(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", [{"question": "a"}])
    with pytest.raises(UserError, match="--limit must be at least 1"):
        load_dataset(f, DatasetOptions(limit=0))
    with pytest.raises(UserError, match="--repeat must be at least 1"):
        load_dataset(f, DatasetOptions(repeat=0))
