"""The results JSONL: flushed rows, truncated last lines, the resume plan (one row per query)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from runtime.records import QueryResult
from runtime.results import ResultsWriter, plan_resume, read_results, rewrite_atomically
from spexlang.diagnostics import UserError


def row(qid: str, status: str = "ok", mode: str = "spec", answer: str | None = "4") -> QueryResult:
    return QueryResult(
        query_id=qid,
        question=f"question {qid}",
        answer=answer if status == "ok" else None,
        reference="4",
        correct=(answer == "4") if status == "ok" else None,
        status=status,
        error=None if status == "ok" else "engine died",
        mode=mode,
        seed=1,
        latency_s=1.5,
        started_at=0.0,
        finished_at=1.5,
        tokens_generated=10,
        main_tokens=8,
        spec_tokens_kept=2,
        spec_tokens_wasted=1,
        spec_requests=3,
        spec_hits=2,
        hit_rate=2 / 3,
        generate_calls=4,
        reward_calls=4,
        nodes=4,
        leaves=2,
        early_stopped=False,
    )


def test_each_row_is_on_disk_as_soon_as_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    writer = ResultsWriter(path, append=False)
    writer.write(row("1"))
    # Read back before close: the row was flushed when written.
    assert list(read_results(path).rows) == ["1"]
    writer.write(row("2"))
    assert list(read_results(path).rows) == ["1", "2"]
    writer.close()
    assert json.loads(path.read_text().splitlines()[0]) == row("1").to_json()


def make_interrupted_file(path: Path) -> None:
    lines = [json.dumps(r.to_json()) for r in (row("1"), row("2"), row("3", status="failed"))]
    cut = json.dumps(row("4").to_json())[:40]  # the process died while writing this row
    path.write_text("\n".join(lines) + "\n" + cut)


def test_truncated_last_line_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    make_interrupted_file(path)
    existing = read_results(path)
    assert existing.truncated_last_line
    assert list(existing.rows) == ["1", "2", "3"]
    assert existing.unreadable_lines == ()


def test_complete_last_row_without_newline_counts(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(row("1").to_json()))
    existing = read_results(path)
    assert list(existing.rows) == ["1"] and not existing.truncated_last_line


def test_resume_runs_missing_and_failed_and_ends_with_one_row_per_query(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    make_interrupted_file(path)
    ids = ["1", "2", "3", "4", "5"]
    plan = plan_resume(read_results(path), ids, "spec")
    assert [r.query_id for r in plan.kept] == ["1", "2"]
    assert plan.to_run == ("3", "4", "5")
    assert plan.retried_failed == 1
    rewrite_atomically(path, plan.kept)
    with ResultsWriter(path, append=True) as writer:
        for qid in plan.to_run:
            writer.write(row(qid))
    final = path.read_text().splitlines()
    assert sorted(json.loads(line)["query_id"] for line in final) == ids
    assert all(json.loads(line)["status"] == "ok" for line in final)
    again = plan_resume(read_results(path), ids, "spec")
    assert again.to_run == () and len(again.kept) == 5


def test_last_row_wins_for_a_repeated_id(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    rows = [row("1", status="failed"), row("1", answer="5")]
    path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in rows))
    assert read_results(path).rows["1"].answer == "5"


def test_resume_refuses_another_mode(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(row("1", mode="sync").to_json()) + "\n")
    with pytest.raises(UserError, match="holds results of mode 'sync', not 'spec'"):
        plan_resume(read_results(path), ["1"], "spec")


def test_a_file_that_is_not_results_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n')
    with pytest.raises(UserError, match="is not a spex results file"):
        read_results(path)


def test_missing_file_reads_as_empty(tmp_path: Path) -> None:
    assert read_results(tmp_path / "none.jsonl").rows == {}


def test_rows_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    original = replace(row("7#2"), hit_rate=None, correct=None, reference=None)
    rewrite_atomically(path, [original])
    assert read_results(path).rows["7#2"] == original
    assert not list(tmp_path.glob(".r.jsonl.tmp-*"))
