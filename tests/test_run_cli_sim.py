"""`spex run` end to end on the simulated engine, in process: rows, summary, trace, resume,
bad dataset rows and engine failures, and never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import runtime.cli.command_run as command_run
from runtime.cli.main import main
from runtime.engines.factory import create_engine
from runtime.engines.protocol import EngineError, GenerateRequest, GenerateResult

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MATH500 = SHARED_DATA / "math500.jsonl"
REBASE = str(REPO / "programs" / "rebase.spx")

needs_math500 = pytest.mark.skipif(not MATH500.exists(), reason="shared data absent")


def spex(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def sim_run(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", REBASE, "--engine", "sim", "--dataset", str(MATH500), *extra]


@needs_math500
def test_run_writes_rows_summary_and_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file, trace = tmp_path / "r.jsonl", tmp_path / "trace"
    code, out, err = spex(
        capsys, *sim_run(tmp_path, "--limit", "4", "-o", str(out_file), "--trace", str(trace))
    )
    assert code == 0, err
    got = rows(out_file)
    assert sorted(r["query_id"] for r in got) == ["1", "2", "3", "4"]
    assert all(r["status"] == "ok" and r["mode"] == "spec" for r in got)
    assert all(r["reference"] is not None and r["correct"] is not None for r in got)
    correct = sum(r["correct"] for r in got)
    assert "queries             4 (ok 4, failed 0)" in out
    assert f"({correct}/4 with a reference)" in out
    assert "hit rate" in out and "virtual engine clock" in out
    records = rows(trace / "trace.jsonl")
    assert {r["type"] for r in records} == {"run", "node", "request"}
    assert {r["query_id"] for r in records if r["type"] != "run"} == {"1", "2", "3", "4"}
    run = json.loads((trace / "run.json").read_text())
    assert run["strategy"] == "rebase" and run["parameters"]["width"] == 16
    assert run["mode"] == "spec" and run["engine"] == "sim"
    assert set(run["query_seeds"]) == {"1", "2", "3", "4"}
    assert run["status"] == "finished" and run["summary"]["ok"] == 4


@needs_math500
def test_resume_reruns_only_missing_and_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "r.jsonl"
    assert (
        spex(capsys, *sim_run(tmp_path, "--limit", "4", "-p", "width=4", "-o", str(out_file)))[0]
        == 0
    )
    first = {r["query_id"]: r for r in rows(out_file)}
    # Simulate a run that died: query 3 failed, query 4's row was cut off mid-write.
    lines = {json.loads(x)["query_id"]: x for x in out_file.read_text().splitlines()}
    failed = {**first["3"], "status": "failed", "answer": None, "error": "engine failed: boom"}
    out_file.write_text(
        lines["1"] + "\n" + lines["2"] + "\n" + json.dumps(failed) + "\n" + lines["4"][:50]
    )
    code, _, err = spex(
        capsys, *sim_run(tmp_path, "--limit", "5", "-p", "width=4", "-o", str(out_file), "--resume")
    )
    assert code == 0, err
    assert "resuming" in err and "2 done, 3 to run (1 failed before)" in err
    assert "ignoring a truncated last line" in err
    final = out_file.read_text().splitlines()
    assert sorted(json.loads(x)["query_id"] for x in final) == ["1", "2", "3", "4", "5"]
    assert final[:2] == [lines["1"], lines["2"]]  # kept rows are untouched
    again = {r["query_id"]: r for r in rows(out_file)}
    assert all(r["status"] == "ok" for r in again.values())
    # Same seed, same question: the re-run finds the same answers as the first run did.
    assert [again[q]["answer"] for q in "34"] == [first[q]["answer"] for q in "34"]


def test_bad_row_is_skipped_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "What is 2+2?", "answer": "4"}\n{"question": 5}\n')
    code, out, err = spex(
        capsys, "run", REBASE, "--engine", "sim", "--dataset", str(data), "-p", "width=2"
    )
    assert code == 0, err
    assert (
        f"spex: warning: {data}:2: field 'question' must be a string, not a number; row skipped"
        in err
    )
    assert "queries             1 (ok 1, failed 0)" in out
    # Without -o, each question is shown with its answer and reference.
    assert "[1] What is 2+2?" in out and "reference: 4" in out


def test_bad_row_fails_the_run_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "What is 2+2?", "answer": "4"}\n{"question": "x"\n')
    code, out, err = spex(
        capsys, "run", REBASE, "--engine", "sim", "--dataset", str(data), "--on-bad-row", "fail"
    )
    assert code == 1 and out == ""
    assert f"{data}:2: not valid JSON" in err and "--on-bad-row skip" in err


def test_missing_dataset_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = spex(
        capsys, "run", REBASE, "--engine", "sim", "--dataset", str(tmp_path / "no.jsonl")
    )
    assert code == 1 and "spex: dataset file not found:" in err


class FailingEngine:
    """The sim engine, except that generating for one question dies with an engine error."""

    def __init__(self, inner: Any, poison: str) -> None:
        self.inner, self.poison, self.name = inner, poison, inner.name

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        if self.poison in request.text:
            raise EngineError("policy server lost: connection reset by peer")
        result: GenerateResult = await self.inner.generate(request)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_engine_failure_is_counted_reported_once_and_resumable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "d.jsonl"
    questions = ["What is 2+2?", "What is 3+5?", "What is 7+1?"]
    data.write_text("".join(json.dumps({"question": q, "answer": "8"}) + "\n" for q in questions))
    monkeypatch.setattr(
        command_run,
        "create_engine",
        lambda spec, args, answers: FailingEngine(create_engine(spec, args, answers), "3+5"),
    )
    out_file = tmp_path / "r.jsonl"
    argv = [
        "run",
        REBASE,
        "--engine",
        "sim",
        "--dataset",
        str(data),
        "-p",
        "width=2",
        "-o",
        str(out_file),
    ]
    code, out, err = spex(capsys, *argv)
    assert code == 1
    assert err.count("policy server lost: connection reset by peer") == 1
    assert "spex: error (1 query): engine failed: policy server lost" in err
    assert "--resume" in err
    assert "queries             3 (ok 2, failed 1)" in out
    by_id = {r["query_id"]: r for r in rows(out_file)}
    assert by_id["2"]["status"] == "failed" and by_id["1"]["status"] == by_id["3"]["status"] == "ok"
    # The engine is back: --resume runs only the failed query and leaves one row per query.
    monkeypatch.setattr(command_run, "create_engine", create_engine)
    code, _, err = spex(capsys, *argv, "--resume")
    assert code == 0, err
    assert "2 done, 1 to run (1 failed before)" in err
    final = rows(out_file)
    assert sorted(r["query_id"] for r in final) == ["1", "2", "3"]
    assert all(r["status"] == "ok" for r in final)


class DeadEngine(FailingEngine):
    async def start(self) -> None:
        raise EngineError("cannot connect to the policy server at http://127.0.0.1:9")


def test_engine_that_cannot_start_is_one_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "What is 2+2?", "answer": "4"}\n')
    monkeypatch.setattr(
        command_run,
        "create_engine",
        lambda spec, args, answers: DeadEngine(create_engine(spec, args, answers), ""),
    )
    out_file = tmp_path / "r.jsonl"
    code, out, err = spex(
        capsys, "run", REBASE, "--engine", "sim", "--dataset", str(data), "-o", str(out_file)
    )
    assert code == 1 and out == ""
    assert err.count("cannot connect to the policy server") == 1
    assert "spex: engine failed: cannot connect" in err
    assert "1 query did not finish. Re-run the same command with --resume" in err
    assert out_file.read_text() == ""
