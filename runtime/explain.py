"""Result rows that explain themselves: why a query got its answer, and what it would have
answered with fewer leaves.

`explain` reads a query's kept leaves and the program's answer rule. Leaves are taken in the
order the search found them: for a layered search layer by layer, in node order within a layer
(the order in which leaves of one layer complete depends on timing, so `sync` and `spec` would
differ; layer by layer they agree); for rollout and depth-first searches in the order the main
path met them, which is the same in every mode. It gives:

- `candidates`: every leaf's answer, its aggregated reward under the answer's role (the vote's
  weight; for `majority`, the program's first reward role) and its answer class;
- `vote_totals`: per class, the summed reward and the leaf count, heaviest first (by weight for
  `vote`, by count for `majority`, by weight for `best`);
- `chosen_leaf` / `chosen_path`: the best-rewarded leaf of the chosen answer's class (the first
  in node order among equals) and its steps' text;
- for `vote` and `majority` programs, `preds` with search-and-learn's `pred_weighted@n`,
  `pred_maj@n` and `pred_naive@n` for n = 1, 2, 4, ... (powers of two up to the leaves found),
  each computed over the FIRST n leaves in the order found, so one run gives the whole scaling
  curve: weighted = the class with the largest summed reward, maj = the class with the most
  leaves, naive = the answer of the single best-rewarded leaf; ties go to the class (or leaf)
  met first. Leaves without an answer count towards n but do not vote (search-and-learn votes
  an empty answer for them); `preds_correct` says which of them match the reference.

Answers are grouped with the program's own equivalence (`AnswerClasses`), the judge the vote
itself used. `program_hash` is the sha256 of the compiled graph's canonical JSON (compiler
export_json's data, keys sorted, no whitespace), so a `.spx` and the `.json` compiled from it
hash the same. Everything here is pure: it reads nodes, never changes them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from compiler.export_json import to_data
from compiler.ir import (
    AnswerAttrs,
    AnswerMethod,
    OpKind,
    RewardAttrs,
    SearchAttrs,
    SearchKind,
    StrategyGraph,
)
from runtime.answers import AnswerClasses
from runtime.records import ClassTotal, LeafAnswer, QueryResult

PRED_KINDS = ("weighted", "maj", "naive")
_QUERY_ID = re.compile(r"^(\d+)(?:#(\d+))?$")


class LeafView(Protocol):
    """What the explanation reads of a leaf: the executor's `Node` has these."""

    node_id: str
    path: tuple[int, ...]
    depth: int
    path_tokens: int
    answer: str | None
    rewards: dict[str, float]

    def steps(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class AnswerRule:
    """How the program turns leaves into an answer: its method and the role it scores by."""

    method: AnswerMethod
    score_role: str | None  # the answer's reward role, else the program's first one
    by_layer: bool = False  # a layered search: leaves in order of depth, then node order

    @staticmethod
    def from_graph(graph: StrategyGraph) -> AnswerRule:
        answer = graph.ops_of(OpKind.ANSWER)[0].attrs
        assert isinstance(answer, AnswerAttrs)
        roles = [
            op.attrs.role for op in graph.ops_of(OpKind.REWARD) if isinstance(op.attrs, RewardAttrs)
        ]
        search = graph.ops_of(OpKind.SEARCH)[0].attrs
        layered = isinstance(search, SearchAttrs) and search.kind is SearchKind.LAYERED
        role = answer.reward_role or (roles[0] if roles else None)
        return AnswerRule(answer.method, role, by_layer=layered)


@dataclass(frozen=True)
class Explanation:
    chosen_leaf: str | None = None
    chosen_path: tuple[str, ...] = ()
    candidates: tuple[LeafAnswer, ...] = ()
    vote_totals: tuple[ClassTotal, ...] = ()
    preds: Mapping[str, str | None] = field(default_factory=dict)
    preds_correct: Mapping[str, bool | None] = field(default_factory=dict)


def explain(
    leaves: Sequence[LeafView],
    rule: AnswerRule,
    classes: AnswerClasses,
    *,
    answer: str | None,
    reference: str | None,
) -> Explanation:
    """Explain a query's answer from its kept leaves, given in the order the search found them."""
    if rule.by_layer:
        leaves = sorted(leaves, key=lambda leaf: (leaf.depth, leaf.path))
    local: dict[int, int] = {}  # the judge's class key -> this row's class number
    candidates: list[LeafAnswer] = []
    for leaf in leaves:
        number: int | None = None
        if leaf.answer is not None:
            number = local.setdefault(classes.key(leaf.answer), len(local))
        reward = leaf.rewards.get(rule.score_role) if rule.score_role is not None else None
        candidates.append(
            LeafAnswer(leaf.node_id, leaf.answer, reward, number, leaf.depth, leaf.path_tokens)
        )
    in_node_order = sorted(range(len(leaves)), key=lambda i: leaves[i].path)
    totals = _totals(candidates, [candidates[i] for i in in_node_order], rule)
    chosen: LeafView | None = None
    if answer is not None:
        wanted = local.get(classes.key(answer))
        best: float | None = None
        for i in in_node_order:
            c = candidates[i]
            score = c.reward if c.reward is not None else 0.0
            if c.answer_class == wanted and (best is None or score > best):
                chosen, best = leaves[i], score
    preds: dict[str, str | None] = {}
    if rule.method in (AnswerMethod.VOTE, AnswerMethod.MAJORITY):
        for n in pred_sizes(len(candidates)):
            preds.update(_preds_at(candidates[:n], n, scored=rule.score_role is not None))
    correct = {k: _correct(v, reference, classes) for k, v in preds.items()}
    return Explanation(
        chosen_leaf=chosen.node_id if chosen is not None else None,
        chosen_path=chosen.steps() if chosen is not None else (),
        candidates=tuple(candidates),
        vote_totals=totals,
        preds=preds,
        preds_correct=correct,
    )


def pred_sizes(found: int) -> list[int]:
    """n = 1, 2, 4, ... up to `found` (search-and-learn's subsets: powers of two only)."""
    sizes: list[int] = []
    n = 1
    while n <= found:
        sizes.append(n)
        n *= 2
    return sizes


def _totals(
    found: list[LeafAnswer], in_node_order: list[LeafAnswer], rule: AnswerRule
) -> tuple[ClassTotal, ...]:
    weight: dict[int, float] = {}
    count: dict[int, int] = {}
    representative: dict[int, str] = {}
    for c in in_node_order:  # the vote reports a class by its first member in node order
        if c.answer_class is None or c.answer is None:
            continue
        representative.setdefault(c.answer_class, c.answer)
        count[c.answer_class] = count.get(c.answer_class, 0) + 1
        weight[c.answer_class] = weight.get(c.answer_class, 0.0) + (c.reward or 0.0)
    scored = rule.score_role is not None
    out = [
        ClassTotal(k, representative[k], weight[k] if scored else None, count[k])
        for k in sorted(representative)
    ]
    by_count = rule.method is AnswerMethod.MAJORITY or not scored
    out.sort(key=lambda t: (-(t.count if by_count else t.weight or 0.0), t.answer_class))
    return tuple(out)


def _preds_at(subset: list[LeafAnswer], n: int, *, scored: bool) -> dict[str, str | None]:
    """search-and-learn's three predictions over these leaves (ties: the first met)."""
    answered = [c for c in subset if c.answer is not None and c.answer_class is not None]
    weight: dict[int, float] = {}
    count: dict[int, int] = {}
    first: dict[int, str] = {}
    for c in answered:
        assert c.answer_class is not None and c.answer is not None
        first.setdefault(c.answer_class, c.answer)
        count[c.answer_class] = count.get(c.answer_class, 0) + 1
        weight[c.answer_class] = weight.get(c.answer_class, 0.0) + (c.reward or 0.0)
    out: dict[str, str | None] = {}
    if scored:
        heaviest = max(weight, key=lambda k: weight[k]) if weight else None
        out[f"pred_weighted@{n}"] = first[heaviest] if heaviest is not None else None
    commonest = max(count, key=lambda k: count[k]) if count else None
    out[f"pred_maj@{n}"] = first[commonest] if commonest is not None else None
    if scored:
        best: LeafAnswer | None = None
        for c in answered:
            if best is None or (c.reward or 0.0) > (best.reward or 0.0):
                best = c
        out[f"pred_naive@{n}"] = best.answer if best is not None else None
    return out


def _correct(pred: str | None, reference: str | None, classes: AnswerClasses) -> bool | None:
    if reference is None:
        return None
    return pred is not None and classes.judge.same(reference, pred)


def program_hash(graph: StrategyGraph) -> str:
    """sha256 of the compiled graph's canonical JSON (see the module docstring)."""
    return data_hash(to_data(graph))


def data_hash(data: Mapping[str, Any]) -> str:
    """sha256 of a graph's JSON data (a compiled `.json` file read back) in canonical form."""
    # The same bytes as runtime/run_record.py's (the --resume check): ASCII-escaped JSON.
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def program_params(graph: StrategyGraph) -> dict[str, Any]:
    """The resolved parameter values: defaults and overrides."""
    return {p.name: p.value for p in graph.params}


def dataset_position(query_id: str) -> tuple[int | None, int]:
    """(dataset line, repeat) from a query id "17" or "17#2"; (None, 0) for other ids."""
    match = _QUERY_ID.match(query_id)
    if match is None:
        return None, 0
    return int(match.group(1)), int(match.group(2) or 0)


class ResultExplainer:
    """Adds the explanation and the program's identity to each row of one run."""

    def __init__(self, graph: StrategyGraph) -> None:
        self.rule = AnswerRule.from_graph(graph)
        self.program_hash = program_hash(graph)
        self.params = program_params(graph)

    def annotate(
        self, result: QueryResult, leaves: Sequence[LeafView], classes: AnswerClasses
    ) -> QueryResult:
        why = explain(leaves, self.rule, classes, answer=result.answer, reference=result.reference)
        line, repeat = dataset_position(result.query_id)
        return replace(
            result,
            dataset_line=line,
            repeat=repeat,
            program_hash=self.program_hash,
            params=dict(self.params),
            chosen_leaf=why.chosen_leaf,
            chosen_path=why.chosen_path,
            candidates=why.candidates,
            vote_totals=why.vote_totals,
            preds=why.preds,
            preds_correct=why.preds_correct,
        )
