"""`spex bench` on the simulated engine: modes side by side, JSON output, agreement with sync."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import runtime.cli.command_run as command_run
from runtime.cli.main import main
from runtime.engines.factory import EngineSpec, create_engine

REPO = Path(__file__).resolve().parents[1]
MATH500 = Path(__file__).resolve().parents[2] / "shared" / "data" / "math500.jsonl"
BEAM = str(REPO / "programs" / "beam_search.spx")


@pytest.mark.skipif(not MATH500.exists(), reason="shared data absent")
def test_bench_json_compares_modes_on_the_same_queries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", BEAM, "--engine", "sim", "--dataset", str(MATH500), "--limit", "4"]
    code = main([*argv, "--modes", "sync,spec", "--json", "-o", str(tmp_path / "b")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in out + err
    report = json.loads(out)
    assert report["baseline"] == "sync" and report["strategy"] == "beam_search"
    sync, spec = report["modes"]
    assert (sync["mode"], spec["mode"]) == ("sync", "spec")
    assert sync["ok"] == spec["ok"] == 4
    # Exact speculation: every answer equals sync's; sync agrees with itself.
    assert (spec["agreement"], spec["agreed"], spec["compared"]) == (1.0, 4, 4)
    assert sync["agreement"] == 1.0 and sync["speedup"] == 1.0
    assert spec["speedup"] == pytest.approx(sync["engine_s"] / spec["engine_s"])
    assert sync["spec_requests"] == 0 and sync["hit_rate"] is None
    assert spec["spec_requests"] > 0 and 0.0 <= spec["hit_rate"] <= 1.0
    assert spec["accuracy"] == sync["accuracy"]
    # Both modes asked the same questions under the same seeds, and wrote their rows.
    files = {
        m: [json.loads(x) for x in (tmp_path / "b" / f"{m}.jsonl").read_text().splitlines()]
        for m in ("sync", "spec")
    }
    assert {(r["query_id"], r["seed"]) for r in files["sync"]} == {
        (r["query_id"], r["seed"]) for r in files["spec"]
    }
    assert json.loads((tmp_path / "b" / "bench.json").read_text())["modes"] == report["modes"]


def test_bench_table_and_unknown_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "What is 2+2?", "answer": "4"}\n')
    argv = ["bench", BEAM, "--engine", "sim", "--dataset", str(data), "-p", "n=4", "-p", "m=2"]
    assert main([*argv, "--modes", "sync,fast"]) == 1
    assert "--modes: unknown mode 'fast'" in capsys.readouterr().err
    assert main([*argv, "--modes", "sync,spec+et", "--quiet"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[1].split()
    assert header[:2] == ["mode", "ok"] and "speedup" in header and "agreement" in header
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[3:5]] == ["sync", "spec+et"]
    # Under the table, each speculative mode's line on whether it speculated.
    assert lines[5:] == [next(x for x in lines if x.startswith("spec+et: speculation"))]


def test_each_mode_gets_a_fresh_engine_of_the_same_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "What is 2+2?", "answer": "4"}\n')
    made: list[tuple[object, str, int]] = []

    def spy(spec: EngineSpec, args: Any, answers: Any) -> Any:
        engine = create_engine(spec, args, answers)
        made.append((engine, spec.text, args.concurrency))
        return engine

    monkeypatch.setattr(command_run, "create_engine", spy)
    argv = ["bench", BEAM, "--engine", "sim:a100-7b", "--dataset", str(data), "-p", "n=4"]
    assert main([*argv, "--modes", "sync,spec,spec+et", "--concurrency", "3", "--json"]) == 0
    assert len({id(e) for e, _, _ in made}) == 3
    assert {(text, c) for _, text, c in made} == {("sim:a100-7b", 3)}
    assert json.loads(capsys.readouterr().out)["engine_name"] == "sim:a100-7b"
