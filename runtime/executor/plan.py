"""The executable view of a compiled strategy: the ops, and the dependencies read off its edges.

`SearchPlan.from_graph` pulls each op's attributes out of the graph once and derives, from the
graph's edges only, what each consumer reads: the reward roles behind the REWARD (speculative)
in-edges of the leaf test, the selection, the backup and the answer. Those sets are the
dataflow dependencies the interpreter schedules by: a node is ready for the selection once its
leaf test is done and the rewards the selection reads are in, and nothing more. The selection's
granularity (one node, a subtree's layer, the whole layer) comes from its rules' registry entries
(`rules.py`; a chain of SELECT stages is one `Pipeline`), widened to the layer when an argument
reads a search-wide count or the stop test reads `count(frontier)`. A LOOKAHEAD op's value is a
reward like any other for the ops that read it (a REWARD edge from it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from compiler.expr import Counted, Expr, Value, counts_read, evaluate
from compiler.ir import (
    AnswerAttrs,
    BackupAttrs,
    EdgeKind,
    GenerateAttrs,
    InputAttrs,
    LeafAttrs,
    LookaheadAttrs,
    Op,
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
from runtime.executor.rules import (
    Granularity,
    Pipeline,
    RuleArgs,
    RuleEntry,
    Stage,
    checked_count,
    evaluate_at,
    rule_entry,
)

T = TypeVar("T")

# A search whose bound never becomes true would run forever; `steps_until` gives up here.
STEPS_UNTIL_LIMIT = 1 << 20

# Which search construct runs which descent rules; layered search runs every rule with counts.
DESCENT_RULES = {SearchKind.ROLLOUT: SelectRule.UCT, SearchKind.DEPTH_FIRST: SelectRule.ORDERED}


class PlanError(ValueError):
    """The graph lacks an op the executor needs, or an op has attributes of the wrong type."""


@dataclass(frozen=True)
class Reads:
    """What one consumer op reads across its REWARD (speculative) in-edges."""

    roles: frozenset[str] = frozenset()  # reward roles, from REWARD ops
    backup: bool = False  # values a BACKUP op carried up the tree

    @property
    def speculative(self) -> bool:
        return bool(self.roles) or self.backup


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
    rewards: tuple[RewardAttrs, ...]  # every reward op of the graph, in op order
    leaf: Expr
    select: SelectAttrs  # the last stage (the op `select`, which closes the loop)
    rule: RuleEntry  # the last stage's entry
    selection: Pipeline
    lookaheads: tuple[tuple[str, LookaheadAttrs], ...]
    root_children: Expr | None
    stop: Expr
    backup: BackupAttrs | None
    answer: AnswerAttrs
    answer_regex: re.Pattern[str]
    leaf_reads: Reads
    select_reads: Reads
    backup_reads: Reads
    answer_reads: Reads
    stop_reads: Reads
    granularity: Granularity  # of the layered region: when a group of candidates may select

    @staticmethod
    def from_graph(graph: StrategyGraph) -> SearchPlan:
        """Read the plan from `graph`; raises PlanError when an op the search needs is missing."""
        search = _attrs(graph, OpKind.SEARCH, SearchAttrs)
        prompt = _attrs(graph, OpKind.PROMPT, PromptAttrs)
        policy = _attrs(graph, OpKind.GENERATE, GenerateAttrs)
        stages = _stages(graph)
        select = stages[-1].attrs
        rewards = tuple(_checked(op.attrs, RewardAttrs) for op in graph.ops_of(OpKind.REWARD))
        inputs = graph.ops_of(OpKind.INPUT)
        input_field = _checked(inputs[0].attrs, InputAttrs).field if inputs else "question"
        backups = graph.ops_of(OpKind.BACKUP)
        backup = _checked(backups[0].attrs, BackupAttrs) if backups else None
        if search.kind is SearchKind.ROLLOUT and backup is None:
            raise PlanError("a rollout search needs a backup op")
        selection = Pipeline(stages)
        descent = DESCENT_RULES.get(search.kind)
        if descent is not None:
            fits = selection.single and select.rule == descent
        else:
            fits = stages[-1].entry.counts is not None and all(
                s.entry.keep is not None for s in stages[:-1]
            )
        if not fits:
            rules = " then ".join(s.attrs.rule for s in stages)
            raise PlanError(f"a {search.kind.value} search cannot select by {rules}")
        leaf_op = _op(graph, OpKind.LEAF_TEST)
        stop_op = _op(graph, OpKind.STOP_TEST)
        answer_op = _op(graph, OpKind.ANSWER)
        stop = _checked(stop_op.attrs, StopAttrs).condition
        granularity = selection.granularity()
        if Counted.FRONTIER in counts_read(stop) and granularity is not Granularity.SIBLINGS:
            granularity = Granularity.LAYER  # the frontier is the whole layer's
        roles: frozenset[str] = frozenset()
        backup_read = False
        for stage in stages:
            found = reads_of(graph, stage.op)
            roles |= found.roles
            backup_read |= found.backup
        lookaheads = tuple(
            (op.name, _checked(op.attrs, LookaheadAttrs)) for op in graph.ops_of(OpKind.LOOKAHEAD)
        )
        sampling = policy.sampling
        stops = sampling.stop if sampling.stop else (prompt.step_delimiter,)
        answer = _checked(answer_op.attrs, AnswerAttrs)
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
                stop=stops,
            ),
            rewards=rewards,
            leaf=_checked(leaf_op.attrs, LeafAttrs).condition,
            select=select,
            rule=stages[-1].entry,
            selection=selection,
            lookaheads=lookaheads,
            root_children=search.root_children,
            stop=stop,
            backup=backup,
            answer=answer,
            answer_regex=re.compile(answer.pattern),
            leaf_reads=reads_of(graph, leaf_op.name),
            select_reads=Reads(roles, backup_read),
            backup_reads=reads_of(graph, backups[0].name) if backups else Reads(),
            answer_reads=reads_of(graph, answer_op.name),
            stop_reads=reads_of(graph, stop_op.name),
            granularity=granularity,
        )

    @property
    def reward_names(self) -> tuple[str, ...]:
        return tuple(r.role for r in self.rewards)

    def leaf_reads_reward(self) -> bool:
        return bool(self.leaf_reads.roles)

    def render_prompt(self, question: str) -> str:
        """The root text: the template with `{question}` replaced (other braces left alone)."""
        return self.template.replace("{question}", question)

    def args(self, counts: Mapping[Counted, int]) -> RuleArgs:
        """The last stage's arguments (descent rules have one stage)."""
        return self.selection.last.args(counts)

    def roots(self, counts: Mapping[Counted, int]) -> int | None:
        """Children of the root before the rule applies (`start children`), if the program says."""
        if self.root_children is None:
            return None
        return checked_count("frontier", "root_children", self.root_children, {"depth": 0}, counts)

    def is_leaf(self, names: Mapping[str, Value]) -> bool:
        return bool(evaluate_at("leaf", "condition", self.leaf, names, None))

    def stopped(
        self, counts: Mapping[Counted, int], depth: int, shares: Mapping[str, float] | None = None
    ) -> bool:
        names = {"depth": depth}
        return bool(evaluate_at("stop", "condition", self.stop, names, counts, shares))

    def steps_until(self, what: Counted, counts: Mapping[Counted, int], depth: int) -> int | None:
        """How many more of `what` make the stop test true with the rest unchanged; None if never.

        Early termination needs "leaves still to come" and "rollouts still to come"; reading them
        off the stop condition this way works for any bound the program writes.
        """
        trial = dict(counts)
        base = trial[what]

        # Shares only rise toward a stop as more leaves agree: for counting the leaves still to
        # come, a leader with no share yet is the safe reading.
        shares = _NoShares()

        def stops(extra: int) -> bool:
            trial[what] = base + extra
            return bool(evaluate(self.stop, {"depth": depth}, trial, shares))

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


class _NoShares(dict[str, float]):
    """Every share is 0."""

    def __missing__(self, key: str) -> float:
        return 0.0

    def __contains__(self, key: object) -> bool:
        return True


def _stages(graph: StrategyGraph) -> tuple[Stage, ...]:
    """The SELECT ops in chain order (a single stage is the op `select`)."""
    ops = graph.ops_of(OpKind.SELECT)
    if not ops:
        raise PlanError(f"strategy {graph.strategy!r}: expected one select op, found 0")
    out = []
    for op in sorted(ops, key=lambda o: (_checked(o.attrs, SelectAttrs).stage, o.name)):
        attrs = _checked(op.attrs, SelectAttrs)
        entry = rule_entry(attrs.rule)
        if entry is None:
            raise PlanError(f"the executor has no entry for the selection rule {attrs.rule!r}")
        out.append(Stage(op.name, attrs, entry))
    return tuple(out)


def reads_of(graph: StrategyGraph, name: str) -> Reads:
    """The rewards op `name` reads: the producers at the ends of its REWARD in-edges."""
    roles: set[str] = set()
    backup = False
    for edge in graph.inputs(name):
        if edge.kind is not EdgeKind.REWARD:
            continue
        src = graph.op(edge.src)
        if isinstance(src.attrs, RewardAttrs):
            roles.add(src.attrs.role)
        elif isinstance(src.attrs, LookaheadAttrs):
            roles.add(src.attrs.name)
        elif src.kind is OpKind.BACKUP:
            backup = True
    return Reads(frozenset(roles), backup)


def _op(graph: StrategyGraph, kind: OpKind) -> Op:
    try:
        return graph.only(kind)
    except ValueError as e:
        raise PlanError(f"strategy {graph.strategy!r}: {e}") from None


def _attrs(graph: StrategyGraph, kind: OpKind, cls: type[T]) -> T:
    return _checked(_op(graph, kind).attrs, cls)


def _checked(attrs: object, cls: type[T]) -> T:
    if not isinstance(attrs, cls):
        raise PlanError(f"expected {cls.__name__}, found {type(attrs).__name__}")
    return attrs
