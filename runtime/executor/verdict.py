"""From leaves to one answer (the ANSWER op), and SPEX's adaptive early-termination test.

`choose_answer` implements the three answer methods over a query's kept leaves taken in node
order: VOTE sums each equivalence class's leaf rewards and takes the heaviest class, MAJORITY
counts leaves per class, BEST takes the answer of the best-rewarded leaf that has one. Ties go to
the class (or leaf) that comes first in node order, so the answer never depends on arrival order.
The answer reported is the class representative: its first member in node order.

`settled` is the early-termination rule of spex-techniques.md (iii): answers are grouped into
classes weighted by each leaf's aggregated step rewards (min over steps); with `left` leaves
still to come, the search may stop when (top − second) > α·left·mean(second class's weights) and
the top class's median weight exceeds the confidence (rollout search adds: the top class has more
than `min_top_size` members). When only one class exists, the mean weight of the top class stands
in for the second class's mean, so a lone early answer cannot end a search that has many leaves
to come.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from compiler.ir import AnswerMethod
from runtime.answers import AnswerClasses


@dataclass(frozen=True)
class ScoredAnswer:
    """One leaf's extracted answer with its reward (for the vote) and its weight (for ET)."""

    answer: str | None
    reward: float
    weight: float


def choose_answer(
    leaves: Sequence[ScoredAnswer], method: AnswerMethod, classes: AnswerClasses
) -> str | None:
    """The query's answer from leaves in node order; None when no leaf has an answer."""
    answered = [leaf for leaf in leaves if leaf.answer is not None]
    if not answered:
        return None
    if method is AnswerMethod.BEST:
        best = answered[0]
        for leaf in answered[1:]:
            if leaf.reward > best.reward:
                best = leaf
        return best.answer
    totals: dict[int, float] = {}
    first: dict[int, str] = {}
    for leaf in answered:
        assert leaf.answer is not None
        key = classes.key(leaf.answer)
        score = leaf.reward if method is AnswerMethod.VOTE else 1.0
        totals[key] = totals.get(key, 0.0) + score
        first.setdefault(key, leaf.answer)
    # Dicts keep insertion order = first appearance in node order; max keeps the first of ties.
    winner = max(totals, key=lambda k: totals[k])
    return first[winner]


def settled(
    leaves: Sequence[ScoredAnswer],
    classes: AnswerClasses,
    *,
    left: int,
    alpha: float,
    confidence: float,
    min_top_size: int = 0,
) -> bool:
    """Whether the answer can no longer change enough to matter: stop the search early."""
    groups: dict[int, list[float]] = {}
    for leaf in leaves:
        if leaf.answer is not None:
            groups.setdefault(classes.key(leaf.answer), []).append(leaf.weight)
    if not groups:
        return False
    ranked = sorted(groups.values(), key=lambda ws: -sum(ws))
    top = ranked[0]
    if len(top) <= min_top_size:
        return False
    second = ranked[1] if len(ranked) > 1 else []
    second_mean = statistics.fmean(second) if second else statistics.fmean(top)
    if sum(top) - sum(second) <= alpha * max(0, left) * second_mean:
        return False
    return statistics.median(top) > confidence
