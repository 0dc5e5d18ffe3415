"""From leaves to one answer (the ANSWER op), and SPEX's adaptive early-termination test.

`choose_answer` implements the three answer methods over a query's kept leaves taken in node
order: VOTE sums each equivalence class's leaf rewards and takes the heaviest class, MAJORITY
counts leaves per class, BEST takes the answer of the best-rewarded leaf that has one. Ties go to
the class (or leaf) that comes first in node order, so the answer never depends on arrival order.
The answer reported is the class representative: its first member in node order.

`early_stop_reason` is the SPEX artifact's early-termination rule (spex-techniques.md (iii)):
answers are grouped into classes, each leaf weighted by its aggregated step rewards (min over
steps by default); with `left` leaves still to come, the search stops when the top class
(heaviest; ties to the first in node order) has more than `min_top_size` members (layered: 1,
rollout: 2), its median weight exceeds the confidence (0.9; rollout 0.95), and
(top − second) > α·left·mean(second class's weights), where with a single class second = 0
and its mean = 0. The artifact checks a layered search only once more than W/4 leaves exist
(`enough_leaves`) and a rollout search only after more than half its rollouts
(`enough_rollouts`); the callers apply those gates. It returns why it stops, or None.
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


def enough_leaves(found: int, width: int) -> bool:
    """The artifact's gate for layered search: more than W/4 leaves found."""
    return found > width / 4


def enough_rollouts(done: int, total: int) -> bool:
    """The artifact's gate for rollout search: rollout index (done − 1) past half of them."""
    return done - 1 > total / 2


def early_stop_reason(
    leaves: Sequence[ScoredAnswer],
    classes: AnswerClasses,
    *,
    left: int,
    alpha: float,
    confidence: float,
    min_top_size: int = 1,
) -> str | None:
    """Why the answer can no longer change enough to matter (stop the search), or None."""
    groups: dict[int, list[float]] = {}
    first: dict[int, str] = {}
    for leaf in leaves:
        if leaf.answer is not None:
            key = classes.key(leaf.answer)
            groups.setdefault(key, []).append(leaf.weight)
            first.setdefault(key, leaf.answer)
    if not groups:
        return None
    # Dicts keep node order, and sorted() is stable: equal totals rank by node order.
    ranked = sorted(groups, key=lambda k: -sum(groups[k]))
    top = groups[ranked[0]]
    if len(top) <= min_top_size:
        return None
    median = statistics.median(top)
    if median <= confidence:
        return None
    second = groups[ranked[1]] if len(ranked) > 1 else []
    second_total = sum(second)
    second_mean = statistics.fmean(second) if second else 0.0
    lead = sum(top) - second_total
    bound = alpha * max(0, left) * second_mean
    if lead <= bound:
        return None
    return (
        f"answer {first[ranked[0]]!r} settled: its {len(top)} leaves lead by {lead:.3f} > "
        f"alpha*left*mean(second) = {alpha:g}*{max(0, left)}*{second_mean:.3f}, "
        f"median weight {median:.3f} > {confidence:g}"
    )


def settled(
    leaves: Sequence[ScoredAnswer],
    classes: AnswerClasses,
    *,
    left: int,
    alpha: float,
    confidence: float,
    min_top_size: int = 1,
) -> bool:
    """Whether `early_stop_reason` stops the search."""
    reason = early_stop_reason(
        leaves, classes, left=left, alpha=alpha, confidence=confidence, min_top_size=min_top_size
    )
    return reason is not None
