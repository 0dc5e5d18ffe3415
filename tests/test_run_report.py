"""Run summaries and bench comparisons computed from result rows; the trace directory writer."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from test_run_results_file import row

from runtime.progress import ProgressBar
from runtime.records import QueryResult, TraceNode, TraceRequest
from runtime.report import (
    BENCH_HEADERS,
    bench_rows,
    compare_modes,
    format_summary,
    format_table,
    percentile,
    summarize,
)
from runtime.tracefile import RUN_FILE, TRACE_FILE, RunManifest, TraceFileSink


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([float(i) for i in range(1, 101)], 95) == pytest.approx(95.05)


def results() -> list[QueryResult]:
    return [
        replace(row("1"), latency_s=1.0),
        replace(row("2", answer="5"), latency_s=3.0),
        replace(row("3"), latency_s=2.0, reference=None, correct=None),
        replace(row("4", status="failed"), error="engine died: connection refused"),
        replace(row("5", status="failed"), error="engine died: connection refused"),
    ]


def test_summary_counts_accuracy_latency_tokens_and_errors() -> None:
    s = summarize(results(), wall_s=2.0, engine_s=30.0)
    assert (s.queries, s.ok, s.failed) == (5, 3, 2)
    assert (s.correct, s.graded, s.accuracy) == (1, 2, 0.5)
    assert s.latency_p50 == 2.0
    assert s.tokens == 50 and s.spec_tokens_wasted == 5 and s.spec_tokens_kept == 10
    assert s.hit_rate == pytest.approx(10 / 15)
    assert s.queries_per_minute == pytest.approx(6.0)
    assert s.errors == (("engine died: connection refused", 2),)
    text = format_summary(s, clock="virtual engine clock")
    assert "queries             5 (ok 3, failed 2)" in text
    assert "accuracy            50.0% (1/2 with a reference)" in text
    assert "kept 10, wasted 5" in text


def test_compare_modes_speedup_and_agreement() -> None:
    sync = results()[:3]
    spec = [sync[0], replace(sync[1], answer="4"), sync[2]]
    summaries = {
        "sync": summarize(sync, wall_s=1.0, engine_s=30.0),
        "spec": summarize(spec, wall_s=1.0, engine_s=20.0),
    }
    out = compare_modes("sync", summaries, {"sync": sync, "spec": spec})
    assert [c.mode for c in out] == ["sync", "spec"]
    assert out[0].speedup == 1.0 and out[0].agreement == 1.0
    assert out[1].speedup == pytest.approx(1.5)
    assert (out[1].agreed, out[1].compared) == (2, 3)
    table = format_table(BENCH_HEADERS, bench_rows(out))
    header = table.splitlines()[0]
    assert all(h in header for h in BENCH_HEADERS)
    assert "1.50x" in table and "66.7%" in table


def test_trace_directory_holds_records_and_manifest(tmp_path: Path) -> None:
    node = TraceNode(
        "1", "q1/0", None, 0, 0, "main", "kept", 0.5, 12, False, None, 0.0, 1.0, 1.2, None
    )
    request = TraceRequest("1", "r1", "q1/0", "generate", "main", 0.0, 0.1, 1.0, "done", False, 12)
    manifest = RunManifest(
        program="programs/rebase.spx",
        strategy="rebase",
        parameters={"width": 16},
        engine="sim:h100-7b",
        engine_options={},
        mode="spec",
        concurrency=4,
        dataset="math500.jsonl",
        base_seed=0,
        query_seeds={"1": 123},
        command_line=("spex", "run"),
    )
    with TraceFileSink(tmp_path / "t") as sink:
        sink.write_manifest(manifest, status="running")
        sink.node(node)
        sink.request(request)
    lines = [json.loads(x) for x in (tmp_path / "t" / TRACE_FILE).read_text().splitlines()]
    assert lines == [node.to_json(), request.to_json()]
    assert [x["type"] for x in lines] == ["node", "request"]
    run = json.loads((tmp_path / "t" / RUN_FILE).read_text())
    assert run["parameters"] == {"width": 16} and run["query_seeds"] == {"1": 123}
    assert run["spex_version"] and run["status"] == "running"
    with TraceFileSink(tmp_path / "t", append=True) as sink:
        sink.node(node)
    assert len((tmp_path / "t" / TRACE_FILE).read_text().splitlines()) == 3


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_only() -> None:
    tty = Terminal()
    bar = ProgressBar(4, tty, enabled=True)
    for failed in (False, True, False, False):
        bar.advance(failed=failed)
    assert "[########################] 4/4  failed 1" in tty.getvalue()
    bar.close()
    assert tty.getvalue().endswith("\r")
    piped = io.StringIO()
    quiet = ProgressBar(4, piped, enabled=True)
    quiet.advance()
    quiet.close()
    assert piped.getvalue() == ""
    assert ProgressBar(2, tty, enabled=False).enabled is False
