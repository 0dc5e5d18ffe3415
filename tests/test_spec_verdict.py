"""The speculation line: a speculative run says whether it speculated and, when the budget
ledger kept speculation out, which bound did and with what numbers (issue 12: a summary with
zero speculative tokens never goes unexplained)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from compiler.load import load_program
from runtime.cli.main import main
from runtime.clock import run_virtual
from runtime.engines.sim.engine import SimEngine
from runtime.executor.api import Query, RunStats, SpecOptions, run_queries
from runtime.executor.budget import LedgerStats, Refusal
from runtime.executor.spec_verdict import SpecSetting, speculation_verdict

REPO = Path(__file__).resolve().parents[1]


BASE = SpecSetting(
    speculative_mode=True,
    runs_ahead=True,
    lookahead=2,
    concurrency=8,
    main_width=4,
    cap=64,
    reserve=32,
)


def setting(**changes: Any) -> SpecSetting:
    return replace(BASE, **changes)


def test_sync_runs_have_no_line() -> None:
    assert speculation_verdict(setting(speculative_mode=False), LedgerStats(), 0) is None


def test_the_reason_is_the_bound_that_refused_most() -> None:
    ledger = LedgerStats(max_running=16)
    ledger.refuse(Refusal.BUDGET, 2)
    ledger.refuse(Refusal.BATCH, 9)
    line = speculation_verdict(setting(), ledger, 0)
    assert line is not None and line.startswith("speculation refused: ")
    assert "16 batch slots are all held for the main paths" in line
    assert "concurrency 8 x 4 requests per query = 32" in line
    ledger.refuse(Refusal.KV, 20)
    line = speculation_verdict(setting(), ledger, 5)
    assert line is not None and line.startswith("speculation limited: 5 speculative requests")
    assert "KV cache" in line


def test_a_batch_merely_full_is_not_called_reserved() -> None:
    ledger = LedgerStats(max_running=256)
    ledger.refuse(Refusal.BATCH, 1)
    line = speculation_verdict(setting(reserve=8), ledger, 3)
    assert line is not None and "were full of main-path work" in line


def test_budget_refusal_names_the_cap() -> None:
    ledger = LedgerStats()
    ledger.refuse(Refusal.BUDGET, 3)
    line = speculation_verdict(setting(cap=12), ledger, 0)
    assert line is not None and "M = 12" in line


def spex_run(capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    code = main(["run", str(REPO / "programs" / extra[0]), "--engine", "sim", *extra[1:]])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in out + err
    return out


def test_run_says_which_bound_limited_or_refused_speculation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = spex_run(
        capsys, "rebase.spx", "--limit", "4", "--concurrency", "4", "--sim-max-running", "16"
    )
    line = next(x for x in out.splitlines() if x.startswith("speculation"))
    assert line.startswith("speculation limited: ")
    assert line.endswith("more refused: the engine's 16 batch slots were full of main-path work")
    out = spex_run(capsys, "rebase.spx", "--limit", "2", "--budget-factor", "0")
    assert "speculative tokens  kept 0, wasted 0" in out
    assert (
        "speculation refused: the global budget is M = 0 policy requests in flight "
        "(--budget-factor 0)" in out
    )


def test_a_reserve_that_holds_every_slot_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    ledger = LedgerStats(max_running=16)
    ledger.refuse(Refusal.BATCH, 3)
    line = speculation_verdict(setting(concurrency=4, main_width=16, reserve=64), ledger, 0)
    assert line == (
        "speculation refused: the engine's 16 batch slots are all held for the main paths "
        "(concurrency 4 x 16 requests per query = 64); lower --concurrency or raise the "
        "engine's batch size"
    )


def test_run_says_why_a_program_cannot_speculate(capsys: pytest.CaptureFixture[str]) -> None:
    out = spex_run(capsys, "best_of_n.spx", "--limit", "2")
    assert "speculation: none possible: the selection reads no reward" in out


def test_run_reports_speculation_that_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "r.jsonl"
    out = spex_run(capsys, "rebase.spx", "--limit", "2", "-o", str(results))
    line = next(x for x in out.splitlines() if x.startswith("speculation"))
    issued = int(line.split()[1])
    assert issued > 0 and line.endswith("speculative requests issued, none refused")
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    assert sum(r["spec_requests"] for r in rows) == issued
    record = json.loads((tmp_path / "r.jsonl.run.json").read_text())
    assert record["budget"]["speculation"] == line


def test_fewer_queries_than_concurrency_reserve_only_their_slots() -> None:
    # 2 queries of width 16 at concurrency 8 on 48 slots, with the whole main width reserved:
    # counting 8 queries would hold 128 slots and refuse every speculative request.
    graph = load_program(REPO / "programs" / "rebase.spx", {})
    queries = [Query(str(i), f"What is {i} + {i}?", str(2 * i), i) for i in (1, 2)]
    engine = SimEngine(max_running_requests=48)

    async def session() -> RunStats:
        await engine.start()
        try:
            return await run_queries(
                graph, engine, queries, mode="spec", concurrency=8,
                options=SpecOptions(reserve_share=1.0), on_result=lambda _: None,
            )  # fmt: skip
        finally:
            await engine.close()

    stats = run_virtual(session())
    assert stats.spec_requests > 0
    assert stats.speculation is not None and "all held" not in stats.speculation


def test_bench_prints_and_records_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program = str(REPO / "programs" / "best_of_n.spx")
    argv = ["bench", program, "--engine", "sim", "--limit", "2", "--modes", "sync,spec"]
    assert main([*argv, "--quiet"]) == 0
    out, _ = capsys.readouterr()
    assert "spec: speculation: none possible" in out
    assert "sync: " not in out
    assert main([*argv, "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_mode = {m["mode"]: m["speculation"] for m in report["modes"]}
    assert by_mode["sync"] is None and by_mode["spec"].startswith("speculation: none possible")


def test_the_gate_is_named_when_it_shrank_speculation() -> None:
    line = speculation_verdict(setting(), LedgerStats(), 7, gated=2, queries=5)
    assert line == (
        "speculation: 7 speculative requests issued, none refused; the usefulness gate shrank "
        "speculation in 2 of 5 queries (too few speculative children kept)"
    )
    assert speculation_verdict(setting(runs_ahead=False), LedgerStats(), 0, gated=0) is not None
