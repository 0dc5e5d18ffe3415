"""The selection rules as pure functions over rewards: which nodes expand, with how many children.

Every function takes the candidates' rewards in node order (the order of their paths) and
returns one count per candidate in that same order, so ties always break by node order and the
result never depends on when a node's reward arrived. The executor applies the same functions to
a complete layer (the real selection) and to a partial one (speculation).

- `each_counts`: every candidate gets `children`.
- `top_counts`: the `k` best by reward get `children` each; with groups (DVTS's subtrees) the
  `k` best of every group.
- `softmax_counts`: REBASE. W_rem = budget; visit candidates by descending reward; with S the sum
  of e^{r/T} over the candidates not yet visited, candidate i gets n_i = ceil(W_rem·e^{r_i/T}/S)
  capped at W_rem, then W_rem -= n_i. The counts sum exactly to the budget.
- `ets_counts`: ETS without its coverage term (as the SPEX artifact runs it). Shares
  p_i = e^{r_i/T} / Σ_j e^{r_j/T} over all candidates; the kept set K maximises
  Σ_{i∈K} p_i − keep_cost·|K|, found by dropping candidates in ascending reward while that
  raises the objective (a candidate is dropped exactly when p_i < keep_cost), keeping at least
  the best; the budget is then split over K by `softmax_counts`.
- `allocation_bounds`: for a partial layer, the most children the final REBASE or ETS
  allocation can give each candidate seen so far, whatever candidates join later.
- `uct_choice`: the child a UCT descent enters: the lowest-index unvisited child, else the
  largest Q/N + c·sqrt(ln N_parent / N), ties to the lowest index.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

# ceil() of a share that float rounding pushed a hair above an integer must not add a child.
CEIL_SLACK = 1e-9
# A bound rounds up a hair more than an allocation does, so float noise never undercuts it.
BOUND_SLACK = 1e-6


def descending_order(rewards: Sequence[float]) -> list[int]:
    """Candidate indices by descending reward, ties by node order."""
    return sorted(range(len(rewards)), key=lambda i: (-rewards[i], i))


def each_counts(n: int, children: int) -> list[int]:
    return [children] * n


def top_counts(
    rewards: Sequence[float],
    k: int,
    children: int,
    groups: Sequence[Hashable] | None = None,
) -> list[int]:
    """`children` for each of the `k` best candidates (of each group, when groups are given)."""
    counts = [0] * len(rewards)
    taken: dict[Hashable, int] = {}
    for i in descending_order(rewards):
        group = groups[i] if groups is not None else None
        if taken.get(group, 0) < k:
            taken[group] = taken.get(group, 0) + 1
            counts[i] = children
    return counts


def _weights(rewards: Sequence[float], temperature: float) -> list[float]:
    if temperature <= 0:
        raise ValueError(f"softmax temperature must be positive, got {temperature}")
    top = max(rewards)
    # Shifting by the maximum leaves every ratio e^{r_i/T}/S unchanged and avoids overflow.
    return [math.exp((r - top) / temperature) for r in rewards]


def softmax_counts(rewards: Sequence[float], temperature: float, budget: int) -> list[int]:
    """REBASE's allocation of `budget` children; sums exactly to max(budget, 0)."""
    counts = [0] * len(rewards)
    if not rewards or budget <= 0:
        return counts
    weights = _weights(rewards, temperature)
    order = descending_order(rewards)
    # Suffix sums over the visiting order: S for each visit, without subtraction drift.
    suffix = [0.0] * (len(order) + 1)
    for pos in range(len(order) - 1, -1, -1):
        suffix[pos] = suffix[pos + 1] + weights[order[pos]]
    remaining = budget
    for pos, i in enumerate(order):
        if remaining <= 0:
            break
        share = remaining * weights[i] / suffix[pos] if suffix[pos] > 0 else remaining
        n = min(remaining, max(0, math.ceil(share - CEIL_SLACK)))
        if pos == len(order) - 1:
            n = remaining  # S is this node's own weight: it takes what is left
        counts[i] = n
        remaining -= n
    return counts


def ets_kept(rewards: Sequence[float], temperature: float, keep_cost: float) -> list[bool]:
    """Which candidates ETS keeps: softmax share at least `keep_cost`, and always the best."""
    if not rewards:
        return []
    weights = _weights(rewards, temperature)
    total = sum(weights)
    kept = [True] * len(rewards)
    alive = len(rewards)
    for i in reversed(descending_order(rewards)):
        # Dropping i changes the objective by keep_cost - p_i; drop while that is a gain.
        if alive > 1 and weights[i] / total < keep_cost:
            kept[i] = False
            alive -= 1
        else:
            break
    return kept


def ets_counts(
    rewards: Sequence[float], temperature: float, budget: int, keep_cost: float
) -> list[int]:
    """ETS's allocation: REBASE over the candidates `ets_kept` keeps."""
    kept = ets_kept(rewards, temperature, keep_cost)
    idx = [i for i, k in enumerate(kept) if k]
    sub = softmax_counts([rewards[i] for i in idx], temperature, budget)
    counts = [0] * len(rewards)
    for i, n in zip(idx, sub, strict=True):
        counts[i] = n
    return counts


def allocation_bounds(
    rewards: Sequence[float], temperature: float, budget: int, keep_cost: float | None = None
) -> list[int]:
    """The most children REBASE (or ETS, given `keep_cost`) can give each of these candidates
    once any further candidates join them, with a budget no larger than `budget`.

    REBASE: while it visits the candidates, W_rem/S never grows (each node takes at least its
    share W_rem·w/S), so node i gets at most ceil(W·w_i/S_all) <= ceil(W·w_i/S_known): more
    candidates only add to S. ETS: a candidate its rule drops now stays dropped (more candidates
    only lower every share p_i, and a better candidate is already known), and the kept set is a
    best-first prefix, so a kept node's S is at least the known weights at or above it.
    """
    if not rewards or budget <= 0:
        return [0] * len(rewards)
    weights = _weights(rewards, temperature)
    if keep_cost is None:
        total = sum(weights)
        return [min(budget, math.ceil(budget * w / total + BOUND_SLACK)) for w in weights]
    kept = ets_kept(rewards, temperature, keep_cost)
    bounds = [0] * len(rewards)
    above = 0.0
    for i in descending_order(rewards):
        above += weights[i]
        if kept[i]:
            bounds[i] = min(budget, math.ceil(budget * weights[i] / above + BOUND_SLACK))
    return bounds


def uct_score(value_sum: float, visits: int, parent_visits: int, exploration: float) -> float:
    """Q/N + c·sqrt(ln N_parent / N) for a visited child."""
    log_parent = math.log(parent_visits) if parent_visits > 1 else 0.0
    return value_sum / visits + exploration * math.sqrt(log_parent / visits)


def uct_choice(stats: Sequence[tuple[int, float]], parent_visits: int, exploration: float) -> int:
    """The index UCT enters among children given as (visits, value_sum)."""
    for i, (visits, _) in enumerate(stats):
        if visits == 0:
            return i
    best = 0
    best_score = -math.inf
    for i, (visits, value_sum) in enumerate(stats):
        score = uct_score(value_sum, visits, parent_visits, exploration)
        if score > best_score:
            best, best_score = i, score
    return best
