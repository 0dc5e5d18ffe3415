"""Fault suite: every numeric option of run and bench is range-checked with a message naming
it and its range; concurrency is capped at the number of queries; a query that searched nothing
(a count of 0) is never an "ok" row."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from fault_support import REBASE, sim_run, spex, write_dataset
from test_run_results_file import row

from runtime.cli.command_run import _refuse_empty_search

BAD_VALUES = [
    ("--lookahead", "-1", "--lookahead must be an integer from 0 to 64, got -1"),
    ("--budget-factor", "nan", "--budget-factor must be a finite number >= 0, got nan"),
    ("--budget-factor", "inf", "--budget-factor must be a finite number >= 0, got inf"),
    ("--budget-factor", "-1", "--budget-factor must be a finite number >= 0, got -1"),
    ("--sim-max-running", "0", "--sim-max-running must be an integer >= 1, got 0"),
    ("--request-timeout", "nan", "--request-timeout must be a finite number > 0, got nan"),
    ("--request-timeout", "0", "--request-timeout must be a finite number > 0, got 0"),
    ("--concurrency", "0", "--concurrency must be an integer >= 1, got 0"),
    ("--limit", "0", "--limit must be an integer >= 1, got 0"),
    ("--repeat", "100000000", "--repeat must be an integer from 1 to 10000"),
    ("--sim-time-scale", "-2", "--sim-time-scale must be a finite number > 0, got -2"),
    ("--sim-seed", str(2**70), "--sim-seed must be an integer from"),
]


@pytest.mark.parametrize("command", ["run", "bench"])
@pytest.mark.parametrize(("flag", "value", "message"), BAD_VALUES)
def test_a_numeric_option_out_of_range_is_one_message_naming_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    flag: str,
    value: str,
    message: str,
) -> None:
    if command == "bench" and flag == "--concurrency":
        message = "--concurrency expects positive whole numbers"  # bench takes a list
    data = write_dataset(tmp_path / "d.jsonl", 1)
    argv = [command, REBASE, "--engine", "sim", "--dataset", str(data), flag, value]
    code, out, err = spex(capsys, *argv)
    assert code == 1 and out == ""
    assert err.startswith("spex: " + message), err
    assert len(err.splitlines()) == 1


def test_concurrency_is_capped_at_the_number_of_queries_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dataset(tmp_path / "d.jsonl", 2)
    code, _, err = spex(capsys, *sim_run(REBASE, data, "--concurrency", "100000"))
    assert code == 0, err
    assert "--concurrency 100000 is more than the 2 queries to run; using 2" in err
    assert "concurrency 2)" in err


def test_a_query_without_a_generate_call_is_failed_not_ok() -> None:
    empty = replace(row("1"), generate_calls=0, tokens_generated=0, answer=None)
    result = _refuse_empty_search(empty)
    assert result.status == "failed" and result.answer is None
    assert result.error is not None and "at least 1" in result.error
    assert _refuse_empty_search(row("2")) == row("2")


@pytest.mark.parametrize("width", ["0", "-1"])
def test_a_width_of_zero_never_gives_ok_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], width: str
) -> None:
    data = write_dataset(tmp_path / "d.jsonl", 2)
    out = tmp_path / "r.jsonl"
    argv = ["run", REBASE, "--engine", "sim", "--dataset", str(data), "-p", f"width={width}"]
    code, _, err = spex(capsys, *argv, "-o", str(out))
    assert code == 1 and err
    if out.exists():  # the compiler may refuse it first; if it ran, no row claims success
        assert '"status": "ok"' not in out.read_text()
