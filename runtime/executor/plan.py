"""The executable view of a compiled strategy: everything the executor reads from the graph IR.

`SearchPlan.from_graph` pulls each op's attributes out of the graph once (prompt, the policy's
sampling, the reward roles, the leaf, select, stop, backup and answer ops), checks that the ops a
search kind needs are there, and precomputes what every node would otherwise recompute (the
compiled answer regex, whether the leaf test reads a reward). The executor never looks at the
program's AST, only at this plan.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from compiler.expr import Counted, Expr, Value, counts_read, evaluate, refs
from compiler.ir import (
    AnswerAttrs,
    BackupAttrs,
    GenerateAttrs,
    InputAttrs,
    LeafAttrs,
    OpKind,
    PromptAttrs,
    RewardAttrs,
    SearchAttrs,
    SearchKind,
    SelectAttrs,
    SelectRule,
    StopAttrs,
    StrategyGraph,
)
from runtime.engines.protocol import SamplingParams

T = TypeVar("T")

# A search whose bound never becomes true would run forever; `steps_until` gives up here.
STEPS_UNTIL_LIMIT = 1 << 20


class PlanError(ValueError):
    """The graph lacks an op the executor needs, or an op has attributes of the wrong type."""


@dataclass(frozen=True)
class SearchPlan:
    """A compiled strategy reduced to what running one query needs."""

    strategy: str
    kind: SearchKind
    input_field: str
    template: str
    delimiter: str
    policy: GenerateAttrs
    sampling: SamplingParams  # the policy's per-step sampling; each node sets its own seed
    rewards: tuple[RewardAttrs, ...]  # every reward role the program reads, in op order
    leaf: Expr
    select: SelectAttrs
    root_children: Expr | None
    stop: Expr
    backup: BackupAttrs | None
    answer: AnswerAttrs
    answer_regex: re.Pattern[str]

    @staticmethod
    def from_graph(graph: StrategyGraph) -> SearchPlan:
        """Read the plan from `graph`; raises PlanError when an op the search needs is missing."""
        search = _attrs(graph, OpKind.SEARCH, SearchAttrs)
        prompt = _attrs(graph, OpKind.PROMPT, PromptAttrs)
        policy = _attrs(graph, OpKind.GENERATE, GenerateAttrs)
        select = _attrs(graph, OpKind.SELECT, SelectAttrs)
        rewards = tuple(_checked(op.attrs, RewardAttrs) for op in graph.ops_of(OpKind.REWARD))
        inputs = graph.ops_of(OpKind.INPUT)
        input_field = _checked(inputs[0].attrs, InputAttrs).field if inputs else "question"
        backups = graph.ops_of(OpKind.BACKUP)
        backup = _checked(backups[0].attrs, BackupAttrs) if backups else None
        if search.kind is SearchKind.ROLLOUT and backup is None:
            raise PlanError("a rollout search needs a backup op")
        expected = {
            SearchKind.LAYERED: {
                SelectRule.EACH,
                SelectRule.TOP,
                SelectRule.SOFTMAX_ALLOCATE,
                SelectRule.ETS_ALLOCATE,
            },
            SearchKind.ROLLOUT: {SelectRule.UCT},
            SearchKind.DEPTH_FIRST: {SelectRule.BEST_FIRST},
        }[search.kind]
        if select.rule not in expected:
            raise PlanError(f"a {search.kind.value} search cannot select by {select.rule}")
        sampling = policy.sampling
        stop = sampling.stop if sampling.stop else (prompt.step_delimiter,)
        answer = _attrs(graph, OpKind.ANSWER, AnswerAttrs)
        return SearchPlan(
            strategy=graph.strategy,
            kind=search.kind,
            input_field=input_field,
            template=prompt.template,
            delimiter=prompt.step_delimiter,
            policy=policy,
            sampling=SamplingParams(
                max_new_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                stop=stop,
            ),
            rewards=rewards,
            leaf=_attrs(graph, OpKind.LEAF_TEST, LeafAttrs).condition,
            select=select,
            root_children=search.root_children,
            stop=_attrs(graph, OpKind.STOP_TEST, StopAttrs).condition,
            backup=backup,
            answer=answer,
            answer_regex=re.compile(answer.pattern),
        )

    @property
    def reward_names(self) -> tuple[str, ...]:
        return tuple(r.role for r in self.rewards)

    def leaf_reads_reward(self) -> bool:
        return bool(refs(self.leaf) & set(self.reward_names))

    def render_prompt(self, question: str) -> str:
        """The root text: the template with `{question}` replaced (other braces left alone)."""
        return self.template.replace("{question}", question)

    def stopped(self, counts: Mapping[Counted, int], depth: int) -> bool:
        return bool(evaluate(self.stop, {"depth": depth}, counts))

    def steps_until(self, what: Counted, counts: Mapping[Counted, int], depth: int) -> int | None:
        """How many more of `what` make the stop test true with the rest unchanged; None if never.

        Early termination needs "leaves still to come" and "rollouts still to come"; reading them
        off the stop condition this way works for any bound the program writes.
        """
        trial = dict(counts)
        base = trial[what]

        def stops(extra: int) -> bool:
            trial[what] = base + extra
            return bool(evaluate(self.stop, {"depth": depth}, trial))

        if stops(0):
            return 0
        if what not in counts_read(self.stop):
            return None
        # Bounds are monotone in a count (`count(x) >= n`): gallop to a stopping value, then
        # bisect down to the least one.
        high = 1
        while not stops(high):
            if high >= STEPS_UNTIL_LIMIT:
                return None
            high *= 2
        low = high // 2  # does not stop (high == 1 gives low == 0, already checked)
        while high - low > 1:
            mid = (low + high) // 2
            if stops(mid):
                high = mid
            else:
                low = mid
        return high


def eval_int(expr: Expr, names: Mapping[str, Value], counts: Mapping[Counted, int]) -> int:
    """Evaluate a count-valued rule argument (children, k, budget) to a non-negative int."""
    value = evaluate(expr, names, counts)
    return max(0, int(value))


def eval_float(expr: Expr, names: Mapping[str, Value], counts: Mapping[Counted, int]) -> float:
    return float(evaluate(expr, names, counts))


def _attrs(graph: StrategyGraph, kind: OpKind, cls: type[T]) -> T:
    try:
        op = graph.only(kind)
    except ValueError as e:
        raise PlanError(f"strategy {graph.strategy!r}: {e}") from None
    return _checked(op.attrs, cls)


def _checked(attrs: object, cls: type[T]) -> T:
    if not isinstance(attrs, cls):
        raise PlanError(f"expected {cls.__name__}, found {type(attrs).__name__}")
    return attrs
