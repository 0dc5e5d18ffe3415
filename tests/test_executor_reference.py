"""The compiled programs make the same choices as independent reference implementations.

Each shipped algorithm runs through the executor (sync and spec) on the sim engine, and through
its reference implementation in tests/reference_algorithms.py over an oracle backed by a fresh
sim engine. The kept search trees (node ids) and the answers must be identical.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_algorithms import (
    RefResult,
    SimOracle,
    beam_search,
    best_of_n,
    compile_program,
    make_queries,
    mcts,
    new_engine,
    node_ids,
    rebase,
    rebase_allocation,
    run_program,
    tot_dfs,
)
from reference_constructs import dvts_search_and_learn

from runtime.executor.api import Mode
from runtime.executor.selection import softmax_counts

Reference = Callable[[SimOracle], RefResult]

CASES: list[tuple[str, dict[str, str], Reference]] = [
    ("best_of_n", {"n": "4", "max_depth": "8"}, lambda o: best_of_n(o, 4, 8)),
    (
        "beam_search",
        {"n": "8", "m": "2", "max_depth": "6"},
        lambda o: beam_search(o, 8, 2, 6),
    ),
    ("dvts", {"n": "8", "m": "2", "max_depth": "6"}, lambda o: dvts_search_and_learn(o, 8, 2, 6)),
    ("rebase", {"width": "8", "max_depth": "8"}, lambda o: rebase(o, 8, 0.2, 8, 1024)),
    (
        "mcts",
        {"children": "3", "rollouts": "10", "max_depth": "4"},
        lambda o: mcts(o, 3, 10, 2.0, 4),
    ),
    (
        "tot_dfs",
        {"proposals": "3", "threshold": "0.45", "max_depth": "6", "max_steps": "12"},
        lambda o: tot_dfs(o, 3, 0.45, 6, 12),
    ),
]


@pytest.mark.parametrize(("program", "overrides", "reference"), CASES, ids=[c[0] for c in CASES])
def test_compiled_program_matches_reference(
    program: str, overrides: dict[str, str], reference: Reference
) -> None:
    graph = compile_program(program, overrides)
    queries = make_queries(4, first_row=3, seed=11)
    runs = {
        mode: run_program(graph, queries, mode, concurrency=2) for mode in (Mode.SYNC, Mode.SPEC)
    }
    oracle_engine = new_engine(queries)
    for query in queries:
        expected = reference(SimOracle(oracle_engine, graph, query))
        assert expected.kept, "the reference search made no nodes"
        for mode, capture in runs.items():
            row = capture.results[query.query_id]
            assert row.status == "ok", row.error
            assert capture.kept(query.query_id) == node_ids(query.query_id, expected.kept), (
                f"{program} {mode.value}: kept tree differs for {query.query_id}"
            )
            assert row.answer == expected.answer
            assert row.leaves == len(expected.leaves)


@settings(max_examples=300, deadline=None)
@given(
    rewards=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=24),
    budget=st.integers(min_value=0, max_value=64),
    temperature=st.sampled_from([0.05, 0.2, 1.0, 5.0]),
)
def test_rebase_allocation_sums_to_budget_and_follows_reward(
    rewards: list[float], budget: int, temperature: float
) -> None:
    for counts in (
        rebase_allocation(rewards, temperature, budget),
        softmax_counts(rewards, temperature, budget),
    ):
        assert sum(counts) == budget
        assert all(c >= 0 for c in counts)
        by_reward = sorted(range(len(rewards)), key=lambda i: (-rewards[i], i))
        ordered = [counts[i] for i in by_reward]
        assert ordered == sorted(ordered, reverse=True), "a better node got fewer children"
    assert softmax_counts(rewards, temperature, budget) == rebase_allocation(
        rewards, temperature, budget
    )


def test_rebase_allocation_worked_example() -> None:
    # T = 0.2, W = 16: e^{r/T} = (e^{2.5}, e^{1.5}, e^{0.5}, 1): 16·0.631 = 10.1 -> 11; then
    # 5·e^{1.5}/(e^{1.5}+e^{0.5}+1) = 3.1 -> 4; then 1·e^{0.5}/(e^{0.5}+1) = 0.62 -> 1; 0 left.
    assert rebase_allocation([0.5, 0.3, 0.1, 0.0], 0.2, 16) == [11, 4, 1, 0]
    assert softmax_counts([0.5, 0.3, 0.1, 0.0], 0.2, 16) == [11, 4, 1, 0]
