"""Exact speculation is invisible: `spec` keeps the same tree and answer as `sync`, only sooner.

Every shipped program runs, with small parameters, over a sweep of questions and seeds in both
modes on the sim engine. Per query, the kept node ids and the answer must be identical. At
concurrency 1 the run must finish no later on the virtual clock, and strictly sooner for REBASE
and beam search (their layers are where the reward barrier stalls most); with concurrent
queries, the mean latency must be no higher.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from reference_algorithms import Capture, compile_program, make_queries, run_program

from runtime.executor.api import Mode, SpecOptions

SMALL: dict[str, dict[str, str]] = {
    "best_of_n": {"n": "4", "max_depth": "8"},
    "beam_search": {"n": "6", "m": "2", "max_depth": "6"},
    "dvts": {"n": "6", "m": "2", "max_depth": "6"},
    "rebase": {"width": "6", "max_depth": "8"},
    "ets": {"width": "6", "max_depth": "8"},
    "tot_bfs": {"breadth": "2", "proposals": "3", "max_depth": "5"},
    "tot_dfs": {"proposals": "3", "threshold": "0.45", "max_depth": "6", "max_steps": "10"},
    "mcts": {"children": "3", "rollouts": "8", "max_depth": "4"},
}
# Programs whose selection reads no reward: nothing to run ahead of.
NOTHING_TO_SPECULATE = {"best_of_n"}
# (first dataset row, first query seed): 6 sweeps × 6 queries = 36 questions and seeds each
SEED_SWEEP = [(0, 100), (7, 200), (20, 300), (70, 17), (150, 5000), (333, 12345)]


def assert_same_search(sync: Capture, spec: Capture) -> None:
    assert sync.results.keys() == spec.results.keys()
    for qid, row in sync.results.items():
        other = spec.results[qid]
        assert row.status == other.status == "ok", (row.error, other.error)
        assert other.answer == row.answer, qid
        assert spec.kept(qid) == sync.kept(qid), f"kept trees differ for {qid}"
        assert (other.nodes, other.leaves) == (row.nodes, row.leaves)


@pytest.mark.parametrize("program", sorted(SMALL))
@pytest.mark.parametrize(("first_row", "seed"), SEED_SWEEP)
def test_spec_is_invisible_and_no_later(program: str, first_row: int, seed: int) -> None:
    graph = compile_program(program, SMALL[program])
    queries = make_queries(6, first_row=first_row, seed=seed)
    sync = run_program(graph, queries, Mode.SYNC, concurrency=1)
    spec = run_program(graph, queries, Mode.SPEC, concurrency=1)
    assert_same_search(sync, spec)
    if program in NOTHING_TO_SPECULATE:
        # No reward edge into the selection: spec runs exactly the synchronous schedule.
        assert spec.stats.spec_requests == 0
        assert spec.makespan == pytest.approx(sync.makespan)
    else:
        assert spec.stats.spec_requests > 0, "speculation never ran"
    assert spec.makespan <= sync.makespan + 1e-9
    if program in ("rebase", "beam_search"):
        assert spec.makespan < sync.makespan


@pytest.mark.parametrize("program", sorted(SMALL))
def test_spec_is_invisible_with_concurrent_queries(program: str) -> None:
    # Queries now share the engine and the global budget. Their speculation also loads each
    # other's batches, so one query may finish later; on average they finish no later.
    graph = compile_program(program, SMALL[program])
    queries = make_queries(6, first_row=30, seed=400)
    sync = run_program(graph, queries, Mode.SYNC, concurrency=4)
    spec = run_program(graph, queries, Mode.SPEC, concurrency=4)
    assert_same_search(sync, spec)
    assert mean_latency(spec) <= mean_latency(sync) + 1e-9


def mean_latency(capture: Capture) -> float:
    return sum(r.latency_s for r in capture.results.values()) / len(capture.results)


def test_default_parameters_are_invisible_too() -> None:
    # The shipped defaults (width 16) exercise the budget ledger and the gate harder.
    graph = compile_program("rebase")
    queries = make_queries(3, first_row=40, seed=5)
    sync = run_program(graph, queries, Mode.SYNC, concurrency=3)
    spec = run_program(graph, queries, Mode.SPEC, concurrency=3)
    assert_same_search(sync, spec)
    assert spec.stats.spec_hits > 0


def test_lookahead_zero_speculates_nothing() -> None:
    graph = compile_program("rebase", SMALL["rebase"])
    queries = make_queries(2, first_row=3)
    spec = run_program(graph, queries, Mode.SPEC, options=SpecOptions(lookahead=0))
    sync = run_program(graph, queries, Mode.SYNC)
    assert spec.stats.spec_requests == 0
    assert_same_search(sync, spec)
    assert spec.makespan == pytest.approx(sync.makespan)


def test_relaxed_mode_keeps_extra_speculative_children() -> None:
    # Relaxed speculation lets speculative children beyond a parent's allocation join the
    # tree, so the tree (and maybe the answer) departs from the synchronous one.
    graph = compile_program("rebase", {"width": "8", "max_depth": "6"})
    queries = make_queries(4, first_row=10, seed=3)
    sync = run_program(graph, queries, Mode.SYNC)
    relaxed = run_program(graph, queries, Mode.SPEC, options=SpecOptions(relaxed=True))
    departed = 0
    for qid, row in relaxed.results.items():
        assert row.status == "ok"
        departed += bool(relaxed.kept(qid) - sync.kept(qid))
    assert departed > 0


@pytest.mark.parametrize("program", ["ets", "beam_search"])
def test_default_allocation_and_top_speculation_is_invisible(program: str) -> None:
    # ETS's pruning by allocation bounds and top's per-pick cap at the shipped widths.
    graph = compile_program(program)
    queries = make_queries(3, first_row=60, seed=9)
    sync = run_program(graph, queries, Mode.SYNC)
    spec = run_program(graph, queries, Mode.SPEC)
    assert_same_search(sync, spec)
    assert spec.stats.spec_hits > 0


def test_estimating_missing_nodes_is_invisible_and_hits_more() -> None:
    # A partial REBASE layer over-allocates to its early nodes; standing in for the missing
    # ones keeps the same tree and makes more of the speculative requests count (under the
    # per-layer policy, whose cap the estimate sizes; path odds are off for both runs).
    graph = compile_program("rebase")
    queries = make_queries(4, first_row=12, seed=21)
    sync = run_program(graph, queries, Mode.SYNC)
    per_layer = SpecOptions(path_odds=False, foresight_samples=0)
    plain = run_program(
        graph, queries, Mode.SPEC, options=replace(per_layer, estimate_missing=False)
    )
    estimated = run_program(graph, queries, Mode.SPEC, options=per_layer)
    assert_same_search(sync, plain)
    assert_same_search(sync, estimated)

    def hit_rate(capture: Capture) -> float:
        return capture.stats.spec_hits / capture.stats.spec_requests

    assert hit_rate(estimated) > hit_rate(plain)
