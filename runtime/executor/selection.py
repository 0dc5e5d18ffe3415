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
- `ets_counts`: ETS (Hooper et al. 2025, "ETS: Efficient Tree Search for Inference-Time
  Scaling"), without its semantic-coverage term (lambda_s = 0, as the SPEX artifact runs it:
  the coverage term needs a sentence-embedding model and clustering, which spex does not
  ship). O_i = candidate i's REBASE count over the whole layer / the budget; the kept set K
  (non-empty) maximises Σ_{i∈K} O_i − λ·(|K| + |ancestors the members of K need|), the
  KV-sharing term: an ancestor shared by several kept nodes is paid once. λ is `keep_cost`,
  or by default the paper's 1/(M+N) (N candidates, M distinct ancestors of them). The
  optimum is found exactly by a dynamic program over the ancestor tree (`_best_nonempty`,
  proof in its docstring), in exact rational arithmetic. The budget is then split over K
  by `softmax_counts`.
- `dvts_counts`: DVTS as search-and-learn runs it: per subtree the best of its M samples,
  and a subtree whose best sample finished ends (`finished_best_ends=False`: the variant
  that goes on from the best unfinished sample).
- `beam_counts`: beam search as search-and-learn runs it: the best N/M unfinished beams
  survive and the N generations of the step are spread over them (`spread=False`: each
  survivor gets M, the beam shrinks as beams finish).
- `allocation_bounds`: for a partial layer, the most children the final REBASE or ETS
  allocation can give each candidate seen so far, whatever candidates join later.
- `uct_choice`: the child a UCT descent enters: the lowest-index unvisited child, else the
  largest Q/N + c·sqrt(ln N_parent / N), ties to the lowest index.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

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


def ets_node_cost(ancestors: Sequence[Sequence[Hashable]]) -> Fraction:
    """The ETS paper's cost of keeping one node: 1/(M+N), with N candidates and M distinct
    ancestors among them (the cost-model weight lambda_b = 1, as its MATH-500 settings use)."""
    distinct = {a for chain in ancestors for a in chain}
    return Fraction(1, len(distinct) + len(ancestors)) if ancestors else Fraction(0)


def ets_shares(rewards: Sequence[float], temperature: float, budget: int) -> list[Fraction]:
    """O_i of the ETS objective: each candidate's REBASE count over the whole layer / budget."""
    counts = softmax_counts(rewards, temperature, budget)
    total = sum(counts)
    return [Fraction(n, total) if total else Fraction(0) for n in counts]


def ets_objective(
    kept: Sequence[bool],
    shares: Sequence[Fraction],
    ancestors: Sequence[Sequence[Hashable]],
    cost: Fraction,
) -> Fraction:
    """Σ_{i kept} O_i − cost·(kept nodes + distinct ancestors the kept nodes need)."""
    needed = {a for chain, k in zip(ancestors, kept, strict=True) if k for a in chain}
    gain = sum((o for o, k in zip(shares, kept, strict=True) if k), Fraction(0))
    return gain - cost * (sum(kept) + len(needed))


@dataclass
class _Subtree:
    """A node of the candidates' ancestor tree: an ancestor (with children) or a candidate."""

    candidate: int | None = None
    children: dict[Hashable, _Subtree] = field(default_factory=dict)


def _ancestor_tree(ancestors: Sequence[Sequence[Hashable]]) -> _Subtree:
    """The forest the ancestor chains (root first) describe, under one cost-free super-root."""
    top = _Subtree()
    parent_of: dict[Hashable, Hashable | None] = {}
    for i, chain in enumerate(ancestors):
        at = top
        previous: Hashable | None = None
        for a in chain:
            if parent_of.setdefault(a, previous) != previous:
                raise ValueError(f"ancestor {a!r} appears under two different parents")
            at = at.children.setdefault(("ancestor", a), _Subtree())
            previous = a
        at.children[("candidate", i)] = _Subtree(candidate=i)
    return top


def _best_nonempty(
    tree: _Subtree, shares: Sequence[Fraction], cost: Fraction, node_cost: Fraction
) -> tuple[Fraction, list[int]]:
    """The best objective of a non-empty kept set inside `tree` (paying `node_cost` for `tree`
    itself) and that set. Exact by induction: a kept set inside `tree` is the union of
    independent choices in its child subtrees, each empty (worth 0) or non-empty (worth at
    most the child's own best); the sum is largest when every child worth more than 0 joins,
    and when none is, the single best child alone (any other non-positive one only lowers it).
    A child worth exactly 0 stays out (fewer nodes, less KV cache); ties go to node order."""
    if tree.candidate is not None:
        return shares[tree.candidate] - node_cost, [tree.candidate]
    # Children come in node order of their first candidate (the order the chains were read
    # in), and max() keeps the first of equal values.
    options = [_best_nonempty(sub, shares, cost, cost) for sub in tree.children.values()]
    positive = [option for option in options if option[0] > 0]
    if positive:
        value = sum((v for v, _ in positive), Fraction(0))
        kept = [i for _, members in positive for i in members]
    else:
        value, kept = max(options, key=lambda option: option[0])
    return value - node_cost, kept


def ancestor_chains(paths: Sequence[tuple[int, ...]]) -> list[tuple[tuple[int, ...], ...]]:
    """ETS's ancestor ids of candidates given by their paths (child indices from the root):
    each path's proper prefixes, root `()` first. Same-depth candidates never contain each other."""
    return [tuple(path[:k] for k in range(len(path))) for path in paths]


def ets_kept(
    rewards: Sequence[float],
    temperature: float,
    budget: int,
    ancestors: Sequence[Sequence[Hashable]],
    keep_cost: float | None = None,
) -> list[bool]:
    """The candidates ETS keeps: the non-empty set maximising `ets_objective`, exactly.

    `ancestors[i]` names candidate i's ancestors, root first (any hashable ids, e.g. node ids
    or path prefixes); candidates that share an ancestor share its KV cache, so it is paid
    once. `keep_cost` is the cost of one node; None means the paper's 1/(M+N).
    """
    if len(ancestors) != len(rewards):
        raise ValueError("ets_kept needs one ancestor chain per candidate")
    if not rewards:
        return []
    shares = ets_shares(rewards, temperature, budget)
    cost = ets_node_cost(ancestors) if keep_cost is None else Fraction(keep_cost)
    _, members = _best_nonempty(_ancestor_tree(ancestors), shares, cost, Fraction(0))
    chosen = set(members)
    return [i in chosen for i in range(len(rewards))]


def ets_counts(
    rewards: Sequence[float],
    temperature: float,
    budget: int,
    keep_cost: float | None,
    ancestors: Sequence[Sequence[Hashable]],
) -> list[int]:
    """ETS's allocation: REBASE's softmax allocation of the budget over the kept candidates."""
    kept = ets_kept(rewards, temperature, budget, ancestors, keep_cost)
    idx = [i for i, k in enumerate(kept) if k]
    sub = softmax_counts([rewards[i] for i in idx], temperature, budget)
    counts = [0] * len(rewards)
    for i, n in zip(idx, sub, strict=True):
        counts[i] = n
    return counts


def allocation_bounds(
    rewards: Sequence[float], temperature: float, budget: int, ets: bool = False
) -> list[int]:
    """The most children REBASE (or ETS, with `ets`) can give each of these candidates once
    any further candidates join them, with a budget no larger than `budget`.

    REBASE: while it visits the candidates, W_rem/S never grows (each node takes at least its
    share W_rem·w/S), so node i gets at most ceil(W·w_i/S_all) <= ceil(W·w_i/S_known): more
    candidates only add to S. ETS: the kept set is not monotone in the candidates (a sibling
    that joins later can make a shared ancestor worth keeping, and 1/(M+N) shrinks), and the
    kept set's best member takes up to the whole budget, so no known candidate can be ruled
    out: the bound is the budget.
    """
    if not rewards or budget <= 0:
        return [0] * len(rewards)
    if ets:
        return [budget] * len(rewards)
    weights = _weights(rewards, temperature)
    total = sum(weights)
    return [min(budget, math.ceil(budget * w / total + BOUND_SLACK)) for w in weights]


def dvts_groups(first_steps: Sequence[int], subtree_size: int) -> list[int]:
    """DVTS subtree of each candidate from the index of its first step (its root child): the
    root's N children are N/M subtrees' M first-step samples, M consecutive ones per subtree."""
    if subtree_size <= 0:
        raise ValueError(f"a DVTS subtree needs at least one sample per step, got {subtree_size}")
    return [i // subtree_size for i in first_steps]


def dvts_counts(
    rewards: Sequence[float],
    finished: Sequence[bool],
    groups: Sequence[Hashable],
    children: int,
    *,
    finished_best_ends: bool = True,
) -> list[int]:
    """DVTS (search-and-learn): each subtree keeps its best candidate (ties by node order) and
    expands it into `children`; when that best candidate is a finished leaf, the subtree ends.

    The candidates are all of the layer's new nodes, finished ones included. With
    `finished_best_ends=False` (the ETS repository's variant, spex's rule before) a subtree
    whose best candidate finished goes on from its best unfinished candidate instead.
    """
    counts = [0] * len(rewards)
    decided: set[Hashable] = set()
    for i in descending_order(rewards):
        group = groups[i]
        if group in decided:
            continue
        if finished[i]:
            if finished_best_ends:
                decided.add(group)
            continue
        decided.add(group)
        counts[i] = children
    return counts


def beam_counts(
    rewards: Sequence[float], keep: int, generations: int, *, spread: bool = True
) -> list[int]:
    """Beam search (search-and-learn) over the unfinished candidates: the `keep` best (ties by
    node order) survive, and the step's `generations` (N) are spread over the survivors: each
    gets N // s, and the first N mod s survivors in node order one more, so the search keeps
    N generations per step however many beams finished. With `spread=False` (Snell et al.'s
    fixed-fan-out formulation, spex's rule before) each survivor gets N // keep (= M), so
    the beam shrinks as beams finish.
    """
    counts = [0] * len(rewards)
    if keep <= 0 or generations <= 0:
        return counts
    survivors = sorted(descending_order(rewards)[:keep])
    if not survivors:
        return counts
    if not spread:
        for i in survivors:
            counts[i] = generations // keep
        return counts
    each, extra = divmod(generations, len(survivors))
    for rank, i in enumerate(survivors):
        counts[i] = each + (1 if rank < extra else 0)
    return counts


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
