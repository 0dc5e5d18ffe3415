"""Fault suite: a bad dataset row costs only that row, with its line number, whatever is wrong
with it (a non-UTF-8 byte, JSON nested too deeply); a BOM keeps row 1; a missing field names the
fields the rows do have and the flag that picks another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fault_support import REBASE, spex

from runtime.datasets import BadRowPolicy, DatasetOptions, load_dataset
from spexlang.diagnostics import UserError

GOOD = [json.dumps({"question": f"What is {n} + 1?", "answer": str(n + 1)}) for n in range(3)]
DEEP = '{"question": ' + "[" * 100_000 + "]" * 100_000 + "}"


def write_bytes(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_one_non_utf8_byte_rejects_only_its_row(tmp_path: Path) -> None:
    bad = b'{"question": "What is \xff?", "answer": "1"}'
    path = write_bytes(tmp_path / "d.jsonl", [GOOD[0].encode(), bad, GOOD[1].encode()])
    dataset = load_dataset(path)
    assert [q.query_id for q in dataset.queries] == ["1", "3"]
    assert [b.render() for b in dataset.skipped] == [
        f"{path}:2: not UTF-8 text (byte 0xff at column 23)"
    ]
    with pytest.raises(UserError, match=r"d.jsonl:2: not UTF-8 text"):
        load_dataset(path, DatasetOptions(on_bad_row=BadRowPolicy.FAIL))


def test_a_byte_order_mark_keeps_row_one(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "d.jsonl", [b"\xef\xbb\xbf" + GOOD[0].encode(), GOOD[1].encode()])
    dataset = load_dataset(path)
    assert [q.query_id for q in dataset.queries] == ["1", "2"] and dataset.skipped == ()
    assert dataset.queries[0].question == "What is 0 + 1?"


def test_a_deeply_nested_row_is_a_bad_row_in_run_and_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_bytes(tmp_path / "d.jsonl", [DEEP.encode(), GOOD[0].encode()])
    dataset = load_dataset(path)
    assert [b.reason for b in dataset.skipped] == ["JSON nested too deeply to read"]
    code, _, err = spex(capsys, "run", REBASE, "--engine", "sim", "--dataset", str(path), "--quiet")
    assert code == 0 and "d.jsonl:1: JSON nested too deeply to read; row skipped" in err
    only_deep = write_bytes(tmp_path / "deep.jsonl", [DEEP.encode()])
    code, _, err = spex(capsys, "serve", "--dataset", str(only_deep), "--port", "0")
    assert code == 1 and "deep.jsonl has no usable rows" in err and "nested too deeply" in err


def test_a_missing_question_field_lists_the_fields_the_rows_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_bytes(tmp_path / "d.jsonl", [g.encode() for g in GOOD])
    code, _, err = spex(
        capsys,
        "run",
        REBASE,
        "--engine",
        "sim",
        "--dataset",
        str(path),
        "--question-field",
        "nosuch",
    )
    assert code == 1
    assert "missing field 'nosuch'" in err and "'question', 'answer'" in err
    assert "--question-field" in err


def test_rows_with_other_field_names_say_which_flag_to_use(tmp_path: Path) -> None:
    rows = [json.dumps({"prompt": "What is 2 + 2?", "target": "4"}).encode()]
    with pytest.raises(UserError) as caught:
        load_dataset(write_bytes(tmp_path / "d.jsonl", rows))
    message = caught.value.message
    assert "missing field 'question'" in message and "'prompt', 'target'" in message
    assert "--question-field" in message
