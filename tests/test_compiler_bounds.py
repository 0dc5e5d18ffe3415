"""Static bounds, checked against formulas computed by hand from each algorithm's definition."""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler import ir, load_program
from compiler.bounds import BOUND_CAP, Bounds, bounds, loop_bound
from compiler.expr import Binary, Const, Count, Counted, Ref
from compiler.intervals import Interval, interval

ROOT = Path(__file__).resolve().parent.parent


def bounds_of(name: str, **overrides: str) -> Bounds:
    return bounds(load_program(ROOT / "programs" / f"{name}.spx", overrides))


@pytest.mark.parametrize(("width", "depth"), [(16, 40), (8, 3), (5, 1)])
def test_rebase_spends_at_most_width_per_layer(width: int, depth: int) -> None:
    b = bounds_of("rebase", width=str(width), max_depth=str(depth))
    calls = width * depth  # each layer splits at most W children; `until depth >= D` ends at D
    assert b == Bounds(calls, calls, calls * 256, depth)


def test_beam_search_keeps_n_over_m_beams_of_m_children() -> None:
    n, m, d = 12, 3, 7
    b = bounds_of("beam_search", n=str(n), m=str(m), max_depth=str(d))
    # layer 1: n samples of the root; every later layer: (n // m) beams x m children
    assert b.generate_calls == n + (d - 1) * (n // m) * m
    assert b.depth == d


def test_dvts_subtrees_each_expand_m() -> None:
    b = bounds_of("dvts", n="16", m="4", max_depth="10")
    # 16 first steps (4 subtrees of 4); each later layer: each live subtree's best node gets 4
    # children, so a layer is at most the 16 candidates it was chosen from
    assert b.generate_calls == 16 + 9 * 16


def test_tot_bfs_grows_to_breadth_times_proposals() -> None:
    b = bounds_of("tot_bfs", breadth="3", proposals="2", max_depth="4")
    # the root alone: 2; then min(3, frontier) x 2 per layer: min(3,2)*2 = 4, min(3,4)*2 = 6, 6
    assert b.generate_calls == 2 + 4 + 6 + 6


def test_mcts_rollouts_times_depth_times_children() -> None:
    b = bounds_of("mcts", rollouts="16", children="4", max_depth="5")
    assert b == Bounds(16 * 5 * 4, 16 * 5 * 4, 16 * 5 * 4 * 256, 5)
    # with many rollouts the full tree (4 + 16 + 64) is the tighter bound
    assert bounds_of("mcts", rollouts="1000", max_depth="3").generate_calls == 4 + 16 + 64


def test_tot_dfs_expansions_times_children() -> None:
    b = bounds_of("tot_dfs", proposals="3", max_steps="20", max_depth="50")
    assert b.generate_calls == 20 * 3
    assert b.depth == 20  # one level deeper per expansion at most
    assert bounds_of("tot_dfs", proposals="2", max_steps="500", max_depth="3").generate_calls == (
        2 + 4 + 8
    )


def test_best_of_n_reward_calls_per_reward_role() -> None:
    graph = load_program(ROOT / "programs" / "best_of_n.spx", {"n": "8", "max_depth": "10"})
    assert len(graph.ops_of(ir.OpKind.REWARD)) == 1
    assert bounds(graph) == Bounds(80, 80, 80 * 256, 10)


def test_loop_bound_reads_or_and_and() -> None:
    depth = Ref("depth")
    nodes = Count(Counted.NODES)
    leaves = Count(Counted.LEAVES)
    grows = frozenset({Counted.NODES})
    assert loop_bound(Binary(">=", depth, Const(5)), grows, True) == 5
    assert loop_bound(Binary(">", depth, Const(5)), grows, True) == 6
    assert loop_bound(Binary("<=", Const(7), nodes), grows, True) == 7
    either = Binary("or", Binary(">=", leaves, Const(3)), Binary(">=", nodes, Const(9)))
    assert loop_bound(either, grows, True) == 9
    both = Binary("and", Binary(">=", depth, Const(4)), Binary(">=", nodes, Const(9)))
    assert loop_bound(both, grows, True) == 9
    assert loop_bound(Binary(">=", leaves, Const(3)), grows, True) is None
    assert loop_bound(Binary(">=", depth, Const(3)), grows, False) is None


def test_intervals_bound_budget_expressions() -> None:
    budget = Binary("-", Const(16), Count(Counted.LEAVES))
    assert interval(budget, {}).hi == 16
    shrinking = Binary("-", Const(4), Ref("depth"))
    assert interval(shrinking, {"depth": Interval(0, 10)}) == Interval(-6, 4)
    assert interval(Binary("*", Count(Counted.NODES), Const(2)), {}).hi == float("inf")
    assert interval(Binary("//", Const(9), Const(2)), {}) == Interval(4, 4)


def test_an_unbounded_budget_is_reported_as_unbounded() -> None:
    text = (ROOT / "programs" / "rebase.spx").read_text(encoding="utf-8")
    text = text.replace("budget = width - count(leaves)", "budget = width + count(nodes)")
    b = bounds(load_program(text, {}))
    assert b.generate_calls is None and b.tokens is None
    assert b.depth == 40


def test_astronomical_trees_are_capped() -> None:
    text = (ROOT / "programs" / "best_of_n.spx").read_text(encoding="utf-8")
    text = text.replace("children = 1", "children = 8")
    b = bounds(load_program(text, {"max_depth": "200"}))
    assert b.generate_calls is None  # 16 * 8^199 is beyond BOUND_CAP
    assert BOUND_CAP == 10**18
