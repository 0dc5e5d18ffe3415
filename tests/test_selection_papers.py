"""The selection rules as the papers define them: ETS's KV-sharing objective (Hooper et al.
2025), DVTS and beam search as Hugging Face's search-and-learn runs them (Beeching et al. 2024).
Each ETS case is checked against a brute-force enumeration of the paper's objective."""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.executor.selection import (
    beam_counts,
    dvts_counts,
    dvts_groups,
    ets_counts,
    ets_kept,
    ets_node_cost,
    ets_objective,
    ets_shares,
    softmax_counts,
    top_counts,
)

ROOT: tuple[Hashable, ...] = ("root",)


def brute_force_best(
    shares: Sequence[Fraction], ancestors: Sequence[Sequence[Hashable]], cost: Fraction
) -> Fraction:
    """The paper's integer program solved by trying every non-empty kept set."""
    n = len(shares)
    best: Fraction | None = None
    for mask in itertools.product([False, True], repeat=n):
        if any(mask):
            value = ets_objective(mask, shares, ancestors, cost)
            best = value if best is None or value > best else best
    assert best is not None
    return best


# -- ETS ----------------------------------------------------------------------------------


def test_ets_issue_example_keeps_two_nodes_like_the_paper() -> None:
    # Depth 1: four children of the root. REBASE counts over the layer are [2, 2, 0, 0], so
    # O = [1/2, 1/2, 0, 0]; N = 4, M = 1 (the root), λ = 1/5. Keeping {0.8, 0.9} is worth
    # 1 − 3/5 = 2/5, keeping 0.9 alone 1/2 − 2/5 = 1/10; REBASE then splits 4 over the two.
    rewards = [0.8, 0.9, 0.5, 0.7]
    chains = [ROOT] * 4
    assert softmax_counts(rewards, 0.2, 4) == [2, 2, 0, 0]
    assert ets_node_cost(chains) == Fraction(1, 5)
    assert ets_kept(rewards, 0.2, 4, chains) == [True, True, False, False]
    assert ets_counts(rewards, 0.2, 4, None, chains) == [1, 3, 0, 0]


def test_ets_pays_for_a_shared_ancestor_once() -> None:
    # Rewards [0.6, 0.8, 0.1], W = 8: O = [1/4, 3/4, 0]. Siblings under one parent (M = 2,
    # λ = 1/5): both kept are worth 1 − 4/5 = 1/5, the best alone 3/4 − 3/5 = 3/20: keep both.
    # The same nodes under three different parents (M = 4, λ = 1/7): both kept cost their own
    # parents too, 1 − 5/7 = 2/7 < 3/4 − 3/7 = 9/28: keep the best alone.
    rewards = [0.6, 0.8, 0.1]
    siblings = [(*ROOT, "p")] * 3
    cousins = [(*ROOT, f"p{i}") for i in range(3)]
    assert ets_kept(rewards, 0.2, 8, siblings) == [True, True, False]
    assert ets_kept(rewards, 0.2, 8, cousins) == [False, True, False]
    assert ets_counts(rewards, 0.2, 8, None, siblings) == [2, 6, 0]
    assert ets_counts(rewards, 0.2, 8, None, cousins) == [0, 8, 0]


def test_ets_outcome_score_is_the_rebase_count_share_not_the_softmax_probability() -> None:
    rewards = [0.9, 0.85, 0.2, 0.1]
    assert ets_shares(rewards, 0.2, 16) == [
        Fraction(n, 16) for n in softmax_counts(rewards, 0.2, 16)
    ]


def test_ets_keeps_at_least_one_node_whatever_the_cost() -> None:
    rewards = [0.3, 0.9, 0.5]
    chains = [ROOT] * 3
    kept = ets_kept(rewards, 0.2, 16, chains, keep_cost=10.0)
    assert kept == [False, True, False]
    assert ets_counts(rewards, 0.2, 16, 10.0, chains) == [0, 16, 0]


def test_ets_with_no_cost_keeps_every_node_rebase_gives_children() -> None:
    rewards = [0.7, 0.9, 0.1, 0.65]
    counts = softmax_counts(rewards, 0.2, 16)
    assert ets_kept(rewards, 0.2, 16, [ROOT] * 4, keep_cost=0.0) == [n > 0 for n in counts]


def test_ets_rejects_inconsistent_ancestor_chains() -> None:
    with pytest.raises(ValueError, match="two different parents"):
        ets_kept([0.5, 0.6], 0.2, 4, [("r", "a", "x"), ("r", "b", "x")])
    with pytest.raises(ValueError, match="one ancestor chain per candidate"):
        ets_kept([0.5, 0.6], 0.2, 4, [("r",)])


@st.composite
def layers(draw: st.DrawFn) -> tuple[list[float], list[tuple[Hashable, ...]]]:
    """A random tree cut at one depth: candidates with rewards and their ancestor chains."""
    depth = draw(st.integers(min_value=1, max_value=4))
    n = draw(st.integers(min_value=1, max_value=9))
    branching = draw(st.integers(min_value=1, max_value=3))
    chains: list[tuple[Hashable, ...]] = []
    for _ in range(n):
        path = tuple(draw(st.integers(0, branching - 1)) for _ in range(depth - 1))
        chains.append(tuple(path[:k] for k in range(depth)))
    rewards = draw(
        st.lists(
            st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.55, 0.7, 0.8, 0.9, 1.0]),
            min_size=n,
            max_size=n,
        )
    )
    return rewards, chains


@settings(max_examples=400, deadline=None)
@given(
    layer=layers(),
    budget=st.integers(min_value=0, max_value=24),
    cost=st.one_of(st.none(), st.sampled_from([0.0, 0.02, 0.05, 0.1, 0.25, 1.0])),
)
def test_ets_kept_set_attains_the_brute_force_optimum(
    layer: tuple[list[float], list[tuple[Hashable, ...]]], budget: int, cost: float | None
) -> None:
    rewards, chains = layer
    kept = ets_kept(rewards, 0.2, budget, chains, keep_cost=cost)
    assert any(kept)
    shares = ets_shares(rewards, 0.2, budget)
    lam = ets_node_cost(chains) if cost is None else Fraction(cost)
    assert ets_objective(kept, shares, chains, lam) == brute_force_best(shares, chains, lam)
    counts = ets_counts(rewards, 0.2, budget, cost, chains)
    assert sum(counts) == budget
    assert all(k or n == 0 for k, n in zip(kept, counts, strict=True))
    kept_rewards = [r for r, k in zip(rewards, kept, strict=True) if k]
    assert [n for n, k in zip(counts, kept, strict=True) if k] == softmax_counts(
        kept_rewards, 0.2, budget
    )


# -- DVTS -----------------------------------------------------------------------------------


def test_dvts_subtrees_are_m_consecutive_first_steps() -> None:
    assert dvts_groups(range(8), 4) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert dvts_groups([5, 2], 2) == [2, 1]
    with pytest.raises(ValueError):
        dvts_groups([0], 0)


def test_dvts_first_step_is_the_best_of_m_samples() -> None:
    # N = 8, M = 4: the root's 8 children are two subtrees' 4 first-step samples each.
    rewards = [0.2, 0.7, 0.4, 0.1, 0.3, 0.3, 0.9, 0.5]
    finished = [False] * 8
    counts = dvts_counts(rewards, finished, dvts_groups(range(8), 4), children=4)
    assert counts == [0, 4, 0, 0, 0, 0, 4, 0]


def test_dvts_subtree_ends_when_its_best_candidate_finished() -> None:
    rewards = [0.9, 0.6, 0.3, 0.5, 0.8]
    finished = [True, False, False, False, True]
    groups = [0, 0, 0, 1, 1]
    # search-and-learn: both subtrees' best candidates are finished leaves: both end.
    assert dvts_counts(rewards, finished, groups, children=4) == [0, 0, 0, 0, 0]
    # The other variant goes on from the best unfinished candidate of each subtree.
    assert dvts_counts(rewards, finished, groups, 4, finished_best_ends=False) == [0, 4, 0, 4, 0]


def test_dvts_ties_break_by_node_order() -> None:
    assert dvts_counts([0.5, 0.5], [False, False], [0, 0], children=2) == [2, 0]
    assert dvts_counts([0.5, 0.5], [True, False], [0, 0], children=2) == [0, 0]


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.sampled_from([0.1, 0.4, 0.5, 0.9]), st.booleans(), st.integers(0, 3)),
        min_size=1,
        max_size=16,
    ),
    children=st.integers(min_value=1, max_value=4),
)
def test_dvts_differs_from_the_other_variant_exactly_where_a_finished_leaf_is_best(
    data: list[tuple[float, bool, int]], children: int
) -> None:
    rewards = [r for r, _, _ in data]
    finished = [f for _, f, _ in data]
    groups = [g for _, _, g in data]
    ends = dvts_counts(rewards, finished, groups, children)
    goes_on = dvts_counts(rewards, finished, groups, children, finished_best_ends=False)
    for group in set(groups):
        members = [i for i, g in enumerate(groups) if g == group]
        best = min(members, key=lambda i: (-rewards[i], i))
        unfinished = [i for i in members if not finished[i]]
        picked = [i for i in members if ends[i]]
        assert picked == ([] if finished[best] else [best])
        assert [i for i in members if goes_on[i]] == (
            [min(unfinished, key=lambda i: (-rewards[i], i))] if unfinished else []
        )
    # Every group keeps at most one node, as `top(1) per subtree` would among unfinished ones.
    unfinished_idx = [i for i, f in enumerate(finished) if not f]
    sub = top_counts(
        [rewards[i] for i in unfinished_idx], 1, children, [groups[i] for i in unfinished_idx]
    )
    assert [goes_on[i] for i in unfinished_idx] == sub


# -- beam search ----------------------------------------------------------------------------


def test_beam_search_spreads_n_generations_over_the_surviving_beams() -> None:
    # N = 16, M = 4: four beams survive; when only three unfinished beams are left, they
    # share all 16 generations (6, 5, 5 in node order) instead of getting 4 each.
    four = [0.9, 0.2, 0.8, 0.7, 0.6]
    assert beam_counts(four, keep=4, generations=16) == [4, 0, 4, 4, 4]
    three = [0.3, 0.9, 0.5]
    assert beam_counts(three, keep=4, generations=16) == [6, 5, 5]
    assert beam_counts(three, keep=4, generations=16, spread=False) == [4, 4, 4]
    assert beam_counts([], keep=4, generations=16) == []


@settings(max_examples=300, deadline=None)
@given(
    rewards=st.lists(st.sampled_from([0.0, 0.2, 0.5, 0.7, 1.0]), max_size=20),
    keep=st.integers(min_value=1, max_value=8),
    per_beam=st.integers(min_value=1, max_value=5),
)
def test_beam_search_keeps_n_generations_per_step_while_any_beam_is_open(
    rewards: list[float], keep: int, per_beam: int
) -> None:
    n = keep * per_beam
    counts = beam_counts(rewards, keep, n)
    survivors = [i for i, c in enumerate(counts) if c]
    if rewards:
        assert sum(counts) == n
        assert len(survivors) == min(keep, len(rewards))
        assert max(counts[i] for i in survivors) - min(counts[i] for i in survivors) <= 1
    # The survivors are the best `keep` by reward, ties by node order: top's choice.
    assert [c > 0 for c in counts] == [c > 0 for c in top_counts(rewards, keep, 1)]
    fixed = beam_counts(rewards, keep, n, spread=False)
    assert fixed == top_counts(rewards, keep, per_beam)
    assert math.isclose(sum(fixed), per_beam * min(keep, len(rewards)))
