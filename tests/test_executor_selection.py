"""The selection rules as pure functions: top-k, DVTS subtrees, REBASE, ETS and UCT."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.executor.selection import (
    allocation_bounds,
    ets_counts,
    softmax_counts,
    top_counts,
    uct_choice,
    uct_score,
)


def test_top_keeps_the_k_best_and_breaks_ties_by_node_order() -> None:
    assert top_counts([0.2, 0.9, 0.5, 0.9], k=2, children=3) == [0, 3, 0, 3]
    assert top_counts([0.5, 0.5, 0.5], k=2, children=1) == [1, 1, 0]
    assert top_counts([0.1], k=4, children=2) == [2]


def test_top_per_subtree_keeps_the_best_of_each_group() -> None:
    rewards = [0.1, 0.8, 0.7, 0.9, 0.3]
    groups = [0, 0, 1, 1, 2]
    assert top_counts(rewards, k=1, children=4, groups=groups) == [0, 4, 0, 4, 4]


@settings(max_examples=300, deadline=None)
@given(
    known=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=10),
    extra=st.lists(st.floats(min_value=0, max_value=1), max_size=10),
    slots=st.lists(st.integers(min_value=0, max_value=20), max_size=10),
    budget=st.integers(min_value=0, max_value=32),
    fewer=st.integers(min_value=0, max_value=8),
    ets=st.booleans(),
)
def test_allocation_bounds_hold_whatever_candidates_join_later(
    known: list[float],
    extra: list[float],
    slots: list[int],
    budget: int,
    fewer: int,
    ets: bool,
) -> None:
    # Speculation cancels a child at or past its parent's bound while the layer still fills:
    # the complete layer (the known candidates plus any others, anywhere in node order, with
    # a budget lowered by leaves) must never give a known candidate more than its bound.
    bounds = allocation_bounds(known, 0.2, budget, ets)
    layer: list[tuple[float, int | None]] = [(r, i) for i, r in enumerate(known)]
    for r, slot in zip(extra, slots + [0] * len(extra), strict=False):
        layer.insert(min(slot, len(layer)), (r, None))
    rewards = [r for r, _ in layer]
    final_budget = max(0, budget - fewer)
    if not ets:
        final = softmax_counts(rewards, 0.2, final_budget)
    else:
        # Any tree shape: each candidate under one of three parents.
        chains = [((), (i % 3,)) for i in range(len(rewards))]
        final = ets_counts(rewards, 0.2, final_budget, None, chains)
    for (_, i), n in zip(layer, final, strict=True):
        if i is not None:
            assert n <= bounds[i], (known, extra, budget, ets)


def test_allocation_bounds_are_tight_for_a_complete_layer() -> None:
    rewards = [0.9, 0.5, 0.7, 0.1]
    exact = softmax_counts(rewards, 0.2, 16)
    bounds = allocation_bounds(rewards, 0.2, 16)
    assert all(b >= n for b, n in zip(bounds, exact, strict=True))
    assert sum(bounds) - sum(exact) < len(rewards)  # each bound rounds up at most once
    # ETS's kept set is not monotone in the candidates: no known candidate is ruled out.
    assert allocation_bounds(rewards, 0.2, 16, ets=True) == [16, 16, 16, 16]


def test_uct_enters_unvisited_children_first_lowest_index_first() -> None:
    assert uct_choice([(3, 2.0), (0, 0.0), (0, 0.0)], parent_visits=3, exploration=2.0) == 1


def test_uct_picks_the_best_score_ties_to_the_lowest_index() -> None:
    stats = [(4, 2.0), (1, 0.9), (4, 2.0)]
    scores = [uct_score(w, n, 9, 2.0) for n, w in stats]
    assert uct_choice(stats, 9, 2.0) == scores.index(max(scores)) == 1
    assert uct_choice([(2, 1.0), (2, 1.0)], 4, 2.0) == 0
    assert uct_score(3.0, 4, 9, 0.0) == 0.75
    assert uct_score(3.0, 4, 9, 2.0) == 0.75 + 2.0 * math.sqrt(math.log(9) / 4)
