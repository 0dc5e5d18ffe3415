"""`spex bench`: the oracle beside the speedup, concurrency lists, traces per mode, plots, and
the progress bar's ETA and running accuracy."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from runtime.cli.main import main
from runtime.progress import ProgressBar

REPO = Path(__file__).resolve().parents[1]
BEAM = str(REPO / "programs" / "beam_search.spx")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"question": "What is 2+2?", "answer": "4"}\n'
        '{"question": "What is 3*5?", "answer": "15"}\n'
    )
    return path


def bench(data: Path, *extra: str) -> list[str]:
    return ["bench", BEAM, "--engine", "sim", "--dataset", str(data), "-p", "n=4", *extra]


def test_json_reports_each_querys_oracle_and_gap_closed(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*bench(data), "--modes", "sync,spec", "--concurrency", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    sync, spec = report["modes"]
    assert report["runs"] == [{"concurrency": 1, "modes": report["modes"]}]
    per_query = spec["oracle"]["per_query"]
    assert [q["query_id"] for q in per_query] == ["1", "2"]
    for q in per_query:
        # The oracle can never be slower than the run whose timings it replays.
        assert 0 < q["oracle_s"] <= q["sync_s"] + 1e-9
        if q["sync_s"] - q["oracle_s"] > 1e-9:
            expected = (q["sync_s"] - q["latency_s"]) / (q["sync_s"] - q["oracle_s"])
            assert q["gap_closed"] == pytest.approx(expected)
    assert spec["oracle"]["oracle_speedup"] == sync["oracle"]["oracle_speedup"] >= 1.0
    # Sync against itself closes none of the gap.
    assert sync["oracle"]["gap_closed_pooled"] in (0.0, None)


def test_table_shows_oracle_columns_and_no_oracle_without_sync(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*bench(data), "--modes", "sync,spec", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[-3:] == ["oracle", "gap", "closed"]
    spec_row = next(line for line in lines if line.startswith("spec"))
    assert spec_row.split()[-2].endswith("x") and "/" in spec_row.split()[-1]
    assert main([*bench(data), "--modes", "spec,spec+et", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert all("oracle" not in m for m in report["modes"])


def test_concurrency_list_traces_and_plots(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = bench(data, "--modes", "sync,spec", "--concurrency", "1,2", "--json")
    traces, plots = tmp_path / "T", tmp_path / "P"
    assert (
        main([*argv, "--trace", str(traces), "--plot", str(plots), "-o", str(tmp_path / "o")]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["concurrency"] == [1, 2] and "modes" not in report
    assert [r["concurrency"] for r in report["runs"]] == [1, 2]
    for level in ("c1", "c2"):
        for mode in ("sync", "spec"):
            run = json.loads((traces / level / mode / "run.json").read_text())
            assert (run["mode"], run["concurrency"], run["status"]) == (
                mode,
                int(level[1:]),
                "finished",
            )
            assert (traces / level / mode / "trace.jsonl").stat().st_size > 0
            assert (tmp_path / "o" / level / f"{mode}.jsonl").exists()
    for name in ("latency", "tokens", "speedup"):
        assert (plots / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert "<svg" in (plots / f"{name}.svg").read_text()


def test_one_level_draws_no_speedup_plot(data: Path, tmp_path: Path) -> None:
    assert main([*bench(data), "--modes", "sync,spec", "--quiet", "--plot", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["latency.png", "tokens.png"]


@pytest.mark.parametrize("bad", ["0", "1,x", "4,4", "-2", ""])
def test_bad_concurrency_is_one_line(
    data: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*bench(data), "--concurrency", bad]) == 1
    err = capsys.readouterr().err
    assert err.startswith("spex: --concurrency") and "Traceback" not in err


def test_plot_or_trace_path_that_is_a_file_is_refused(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "file"
    taken.write_text("mine")
    for flag in ("--plot", "--trace"):
        assert main([*bench(data), flag, str(taken)]) == 1
        assert f"{flag} {taken} is a file" in capsys.readouterr().err
    assert taken.read_text() == "mine"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_shows_running_accuracy_and_time_left() -> None:
    bar = ProgressBar(4, Terminal(), enabled=True, label="spec")
    bar._started -= 10.0  # as if 10 s had passed before the first query finished
    bar.advance(correct=True)
    bar.advance(correct=False)
    line = bar.render(now=bar._started + 10.0)
    # 2 of 4 done in 10 s: about 10 s left; 1 of 2 graded queries correct.
    assert "2/4" in line and "acc 50.0%" in line and "ETA 10s" in line
    bar.advance(correct=None)  # no reference: not graded
    bar.advance(failed=True)
    done = bar.render(now=bar._started + 200.0)
    assert "acc 50.0%" in done and "failed 1" in done and "ETA" not in done
    slow = ProgressBar(100, Terminal(), enabled=True)
    slow.advance()
    assert "ETA 1m39s" in slow.render(now=slow._started + 1.0)
