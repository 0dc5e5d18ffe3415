"""Fault suite: results files cannot be destroyed. Nothing is created or truncated before the
engine has started, an existing file needs --resume or --overwrite, an input of the run is never
an output, a full disk leaves whole rows and a clear message, --resume refuses another run's file
naming what differs, and the run record ends finished, interrupted or failed."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from fault_support import REBASE, rows, sim_run, spex, write_dataset
from test_run_cli_sim import DeadEngine
from test_run_results_file import row

import runtime.cli.command_run as command_run
import runtime.results as results
from runtime.engines.factory import create_engine
from runtime.results import ResultsWriter, read_results
from runtime.run_record import read_record


def test_an_existing_results_file_is_refused_without_resume_or_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = write_dataset(tmp_path / "d.jsonl"), tmp_path / "r.jsonl"
    assert spex(capsys, *sim_run(REBASE, data, "--limit", "2", "-o", str(out)))[0] == 0
    before = out.read_bytes()
    code, _, err = spex(capsys, *sim_run(REBASE, data, "-o", str(out)))
    assert code == 1
    assert "already exists (2 result rows)" in err and "--resume" in err and "--overwrite" in err
    assert out.read_bytes() == before
    code, _, err = spex(capsys, *sim_run(REBASE, data, "-o", str(out), "--overwrite"))
    assert code == 0, err
    assert len(rows(out)) == 4
    code, _, err = spex(capsys, *sim_run(REBASE, data, "-o", str(out), "--overwrite", "--resume"))
    assert code == 1 and "pick one" in err


def test_an_input_of_the_run_is_never_its_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dataset(tmp_path / "d.jsonl")
    before = data.read_bytes()
    for flags in ([], ["--overwrite"], ["--resume"]):
        code, _, err = spex(capsys, *sim_run(REBASE, data, "-o", str(data), *flags))
        assert code == 1 and "is the dataset of this run" in err
    assert data.read_bytes() == before
    program = tmp_path / "p.spx"
    program.write_text(Path(REBASE).read_text())
    code, _, err = spex(capsys, *sim_run(str(program), data, "-o", str(program), "--overwrite"))
    assert code == 1 and "is the program of this run" in err
    assert program.read_text() == Path(REBASE).read_text()


def test_an_engine_that_cannot_start_leaves_the_results_file_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, out = write_dataset(tmp_path / "d.jsonl"), tmp_path / "keep.jsonl"
    assert spex(capsys, *sim_run(REBASE, data, "--limit", "2", "-o", str(out)))[0] == 0
    before, record = out.read_bytes(), read_record(out)
    argv = ["run", REBASE, "--engine", "sglang", "--policy-url", "http://127.0.0.1:9"]
    argv += ["--reward-url", "http://127.0.0.1:9"]
    code, _, err = spex(capsys, *argv, "--dataset", str(data), "-o", str(out), "--overwrite")
    assert code == 1 and "cannot connect to the policy server" in err
    assert out.read_bytes() == before and read_record(out) == record
    # The same engine, which cannot start this time: --resume keeps every row and the record.
    monkeypatch.setattr(
        command_run,
        "create_engine",
        lambda spec, args, answers: DeadEngine(create_engine(spec, args, answers), ""),
    )
    code, _, err = spex(capsys, *sim_run(REBASE, data, "-o", str(out), "--resume"))
    assert code == 1 and "cannot connect" in err
    assert out.read_bytes() == before and read_record(out) == record


def test_a_full_disk_leaves_no_partial_row_and_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.jsonl"
    writer = ResultsWriter(path, append=False)
    writer.write(row("1"))
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        if len(data) > 20:
            return real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(results.os, "write", half_then_full)
    with pytest.raises(results.ResultsWriteError, match="No space left on device"):
        writer.write(row("2"))
    monkeypatch.undo()
    writer.close()
    assert path.read_text().endswith("\n")
    assert list(read_results(path).rows) == ["1"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_dev_full_as_output_is_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dataset(tmp_path / "d.jsonl", 2)
    code, _, err = spex(capsys, *sim_run(REBASE, data, "-o", "/dev/full", "--quiet"))
    assert code == 1
    assert "spex: cannot write results file /dev/full: No space left on device" in err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["-p", "width=3"], "parameters (width=4 -> 3)"),
        (["--seed", "99"], "--seed (0 in the file, 99 now)"),
        (["--mode", "sync"], "--mode"),
        (["--sim-seed", "5"], "engine options (sim_seed=0 -> 5)"),
        (["--engine", "sim:a100-7b"], "--engine"),
    ],
)
def test_resume_refuses_another_configuration_naming_what_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    data, out = write_dataset(tmp_path / "d.jsonl"), tmp_path / "r.jsonl"
    assert spex(capsys, *sim_run(REBASE, data, "--limit", "2", "-o", str(out)))[0] == 0
    before = out.read_bytes()
    code, _, err = spex(capsys, *sim_run(REBASE, data, "-o", str(out), "--resume", *flags))
    assert code == 1 and "holds the results of another run" in err
    assert named in err
    assert out.read_bytes() == before


def test_resume_refuses_another_program_and_another_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = write_dataset(tmp_path / "d.jsonl"), tmp_path / "r.jsonl"
    assert spex(capsys, *sim_run(REBASE, data, "--limit", "2", "-o", str(out)))[0] == 0
    edited = tmp_path / "rebase.spx"  # the same parameters, another prompt
    edited.write_text(Path(REBASE).read_text().replace("step by step", "carefully"))
    code, _, err = spex(capsys, *sim_run(str(edited), data, "-o", str(out), "--resume"))
    assert code == 1 and "program content (sha256" in err
    other = write_dataset(tmp_path / "other.jsonl")
    code, _, err = spex(capsys, *sim_run(REBASE, other, "-o", str(out), "--resume"))
    assert code == 1 and 'dataset ("d.jsonl" in the file, "other.jsonl" now)' in err


def test_a_row_with_a_wrong_type_is_run_again_not_trusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = write_dataset(tmp_path / "d.jsonl"), tmp_path / "r.jsonl"
    assert spex(capsys, *sim_run(REBASE, data, "-o", str(out)))[0] == 0
    good = rows(out)
    broken = [{**good[0], "latency_s": "abc"}, {**good[1], "tokens_generated": float("nan")}]
    out.write_text("".join(json.dumps(r) + "\n" for r in [*broken, *good[2:]]))
    code, _, err = spex(capsys, *sim_run(REBASE, data, "-o", str(out), "--resume"))
    assert code == 0, err
    assert "are not valid result rows" in err and "2 to run" in err
    again = {r["query_id"]: r for r in rows(out)}
    assert sorted(again) == ["1", "2", "3", "4"]
    assert all(isinstance(r["latency_s"], float) for r in again.values())
    assert [again[r["query_id"]]["answer"] for r in good] == [r["answer"] for r in good]


def test_the_run_record_ends_finished_or_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out, trace = write_dataset(tmp_path / "d.jsonl"), tmp_path / "r.jsonl", tmp_path / "t"
    argv = sim_run(REBASE, data, "-o", str(out), "--trace", str(trace))
    code, text, _ = spex(capsys, *argv)
    assert code == 0
    record = read_record(out)
    assert record is not None and record["status"] == "finished"
    budget = record["budget"]
    # Speculation is granted only below the cap M (main-path requests are never refused).
    assert budget["cap"] >= 1 and 0 < budget["max_spec_in_flight"] <= budget["cap"]
    assert budget["spec_granted"] > 0
    assert f"cap M = {budget['cap']}" in text
    run = json.loads((trace / "run.json").read_text())
    assert run["status"] == "finished" and run["budget"] == budget
    # A trace directory is protected like the results file.
    code, _, err = spex(capsys, *sim_run(REBASE, data, "--trace", str(trace)))
    assert code == 1 and "already holds a trace" in err
