"""The run-time side of the selection rules: one registry entry per rule name.

Everything the interpreter knows about a rule is its entry here (the compiler's static entry is
compiler/rules.py), so adding a rule means these two entries, never a new driver. An entry says:

- `granularity`: the smallest set of candidates the rule must see at once. `NODE`: each node
  alone (it reads nothing of its siblings); `SUBTREE`: a subtree's layer (a `per subtree` scope);
  `LAYER`: the whole layer; `SIBLINGS`: the children of one node (descent rules: UCT, ordered).
  The program widens it to `LAYER` when an argument reads a search-wide count.
- `keep`: as a stage of a pipeline (`top(8, by = prm) then allocate(...)`), which candidates
  it passes on; `final_drop`: a candidate it drops from a partial layer stays dropped whatever
  candidates join later (so speculation may cancel that candidate's children at once).
- `counts`: as the last stage, the children per candidate, in candidate (node) order.
- `estimate` (optional): counts on a partial layer in which `unknown` candidates of reward
  `prior` are still to come (allocations split a fixed budget: see layered.py), and `prior`,
  the reward standing in for a missing candidate.
- `bounds` (optional): for a partial layer, the most children the final selection can still give
  each candidate seen so far; speculative children past a bound are cancelled at once.
- `fan_out`: children one pick yields, for the per-layer speculative cap.
- `width`: the main-path requests of one layer (the global budget's nominal width).

`Pipeline` composes the stages of one selection. Rules read their arguments through
`RuleArgs`, which evaluates an argument at a depth and reports a failure located at that
argument (`StrategyError`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from compiler.expr import Counted, EvalError, Expr, Value, counts_read, evaluate
from compiler.ir import SelectAttrs, SelectRule, SelectScope
from runtime.executor.selection import (
    allocation_bounds,
    ancestor_chains,
    beam_counts,
    descending_order,
    dvts_counts,
    dvts_groups,
    ets_counts,
    softmax_counts,
    top_counts,
)
from runtime.executor.tree import Node


class Granularity(Enum):
    """How many candidates a selection must see before it can fire."""

    NODE = "node"  # each node on its own: chains never wait for each other
    SUBTREE = "subtree"  # the layer of one subtree under a root child
    LAYER = "layer"  # the whole layer
    SIBLINGS = "siblings"  # the children of one node (descents: UCT, ordered)


COARSENESS = {Granularity.NODE: 0, Granularity.SUBTREE: 1, Granularity.LAYER: 2}


class StrategyError(Exception):
    """A strategy expression failed or gave a value its use forbids, at run time.

    `op` and `attr` locate the expression in the graph (`select`, `children`); `expr` is its text.
    """

    def __init__(self, op: str, attr: str, expr: str, message: str) -> None:
        super().__init__(message)
        self.op = op
        self.attr = attr
        self.expr = expr
        self.message = message


# Lower bounds of count-valued arguments (the same the compiler checks on constants).
AT_LEAST = {"children": 1, "k": 1, "budget": 0, "root_children": 1, "steps": 0}
WORDS = {
    "children": "`children`",
    "k": "the K of top(K, ...)",
    "budget": "the budget",
    "root_children": "`start children`",
    "steps": "the lookahead steps",
}


def evaluate_at(
    op: str,
    attr: str,
    expr: Expr,
    names: Mapping[str, Value],
    counts: Mapping[Counted, int] | None,
    shares: Mapping[str, float] | None = None,
) -> Value:
    """`evaluate` whose failure is a StrategyError located at `op`.`attr`."""
    try:
        return evaluate(expr, names, counts, shares)
    except EvalError as e:
        raise StrategyError(op, attr, str(expr), str(e)) from None
    except (TypeError, ArithmeticError) as e:
        raise StrategyError(op, attr, str(expr), f"{expr}: {e}") from None


def checked_count(
    op: str,
    attr: str,
    expr: Expr,
    names: Mapping[str, Value],
    counts: Mapping[Counted, int] | None,
) -> int:
    """An integer argument; below its lower bound it is an error naming the expression."""
    value = evaluate_at(op, attr, expr, names, counts)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StrategyError(op, attr, str(expr), f"{expr} is {value!r}, not a number")
    n = int(value)
    low = AT_LEAST.get(attr, 0)
    if n < low:
        where = ", ".join(f"{k} = {v!r}" for k, v in names.items())
        raise StrategyError(
            op,
            attr,
            str(expr),
            f"{WORDS.get(attr, f'`{attr}`')} must be at least {low}, but {expr} is {n}"
            f" (with {where})",
        )
    return n


@dataclass(frozen=True)
class RuleArgs:
    """One selection stage's arguments, evaluated against the search's counts at a depth."""

    op: str
    attrs: SelectAttrs
    counts: Mapping[Counted, int]

    def expr(self, name: str) -> Expr:
        found = self.attrs.children if name == "children" else self.attrs.arg(name)
        if found is None:
            raise StrategyError(self.op, name, "", f"the {self.attrs.rule} rule needs `{name}`")
        return found

    def has(self, name: str) -> bool:
        found = self.attrs.children if name == "children" else self.attrs.arg(name)
        return found is not None

    def number(self, name: str, depth: int) -> float:
        return float(evaluate_at(self.op, name, self.expr(name), {"depth": depth}, self.counts))

    def count(self, name: str, depth: int) -> int:
        return checked_count(self.op, name, self.expr(name), {"depth": depth}, self.counts)

    def holds(self, name: str, node: Node) -> bool:
        """A condition argument on one node (`where(prm > 0.2)`)."""
        return bool(evaluate_at(self.op, name, self.expr(name), node_names(node), self.counts))

    def rewards(self, nodes: Sequence[Node]) -> list[float]:
        return [n.reward(self.attrs.reward_role) for n in nodes]


def node_names(node: Node) -> dict[str, Value]:
    """What a node-level expression may read: depth, tokens, answered, eos and its values."""
    names: dict[str, Value] = {
        "depth": node.depth,
        "tokens": node.path_tokens,
        "answered": node.answered,
        "eos": node.eos,
    }
    names.update(node.rewards)
    return names


Groups = Sequence[Hashable] | None
Keep = Callable[[RuleArgs, Sequence[Node], int, Groups], list[bool]]
Counts = Callable[[RuleArgs, Sequence[Node], int, Groups], list[int]]
Estimate = Callable[[RuleArgs, Sequence[Node], int, float, int], list[int]]
Bounds = Callable[[RuleArgs, Sequence[Node], int, Groups], list[int]]
Prior = Callable[[RuleArgs, Sequence[Node], int], float]


@dataclass(frozen=True)
class RuleEntry:
    """What the interpreter knows about one selection rule (see the module docstring)."""

    granularity: Callable[[SelectAttrs], Granularity]
    counts: Counts | None  # None: a descent rule, run by its search construct
    arguments: tuple[str, ...]  # the expressions it evaluates (for `reads_counts`)
    keep: Keep | None = None
    final_drop: bool = False
    estimate: Estimate | None = None
    prior: Prior | None = None
    bounds: Bounds | None = None
    fan_out: Callable[[RuleArgs], int] = lambda args: 1
    width: Callable[[RuleArgs, int], int] = lambda args, roots: roots
    sees_leaves: bool = False  # its candidates include the layer's finished leaves
    subtree: Callable[[RuleArgs, Node], Hashable] | None = None  # SUBTREE: a node's subtree


# -- the entries ------------------------------------------------------------------------------


def _children(args: RuleArgs, depth: int) -> int:
    return args.count("children", depth) if args.has("children") else 1


def _each(args: RuleArgs, nodes: Sequence[Node], depth: int, groups: Groups) -> list[int]:
    return [_children(args, depth)] * len(nodes)


def _top_keep(args: RuleArgs, nodes: Sequence[Node], depth: int, groups: Groups) -> list[bool]:
    return [n > 0 for n in top_counts(args.rewards(nodes), args.count("k", depth), 1, groups)]


def _top(args: RuleArgs, nodes: Sequence[Node], depth: int, groups: Groups) -> list[int]:
    return top_counts(args.rewards(nodes), args.count("k", depth), _children(args, depth), groups)


def _where_keep(args: RuleArgs, nodes: Sequence[Node], depth: int, groups: Groups) -> list[bool]:
    return [args.holds("condition", n) for n in nodes]


def _where(args: RuleArgs, nodes: Sequence[Node], depth: int, groups: Groups) -> list[int]:
    children = _children(args, depth)
    return [children if kept else 0 for kept in _where_keep(args, nodes, depth, groups)]


def _softmax_of(args: RuleArgs, rewards: Sequence[float], depth: int, paths: object) -> list[int]:
    return softmax_counts(rewards, args.number("temperature", depth), args.count("budget", depth))


def _ets_of(args: RuleArgs, rewards: Sequence[float], depth: int, paths: Paths) -> list[int]:
    keep_cost = args.number("keep_cost", depth) if args.has("keep_cost") else None
    return ets_counts(
        rewards,
        args.number("temperature", depth),
        args.count("budget", depth),
        keep_cost,
        ancestor_chains(list(paths)),
    )


Paths = Sequence[tuple[int, ...]]
# An allocation over rewards; `paths` are the candidates' (ETS counts their shared ancestors).
Allocation = Callable[[RuleArgs, Sequence[float], int, Paths], list[int]]


def _allocating(of: Allocation) -> Counts:
    def counts(args: RuleArgs, nodes: Sequence[Node], depth: int, groups: Groups) -> list[int]:
        return of(args, args.rewards(nodes), depth, [n.path for n in nodes])

    return counts


def _estimated(of: Allocation) -> Estimate:
    """Counts of an allocation over the known rewards plus `unknown` stand-ins of `prior`,
    which share the best known candidate's ancestors."""

    def estimate(
        args: RuleArgs, nodes: Sequence[Node], depth: int, prior: float, unknown: int
    ) -> list[int]:
        rewards = args.rewards(nodes)
        best = nodes[descending_order(rewards)[0]].path
        paths = [*(n.path for n in nodes), *([best] * unknown)]
        return of(args, [*rewards, *([prior] * unknown)], depth, paths)[: len(nodes)]

    return estimate


def _softmax_prior(args: RuleArgs, nodes: Sequence[Node], depth: int) -> float:
    """The reward whose softmax weight is the mean weight of the nodes' (log-mean-exp): the
    expected weight of a candidate not scored yet."""
    rewards = args.rewards(nodes)
    temperature = args.number("temperature", depth)
    top = max(rewards)
    if temperature <= 0:
        return top
    mean = sum(math.exp((r - top) / temperature) for r in rewards) / len(rewards)
    return top + temperature * math.log(mean)


def _softmax_bounds(args: RuleArgs, nodes: Sequence[Node], depth: int, groups: Groups) -> list[int]:
    temperature = args.number("temperature", depth)
    return allocation_bounds(args.rewards(nodes), temperature, args.count("budget", depth))


def _ets_bounds(args: RuleArgs, nodes: Sequence[Node], depth: int, groups: Groups) -> list[int]:
    # ETS's kept set is not monotone in the candidates: every bound is the budget.
    return allocation_bounds(
        args.rewards(nodes),
        args.number("temperature", depth),
        args.count("budget", depth),
        ets=True,
    )


def _dvts(args: RuleArgs, nodes: Sequence[Node], depth: int, groups: Groups) -> list[int]:
    samples = args.count("samples", depth)
    subtrees = dvts_groups([n.path[0] if n.path else 0 for n in nodes], samples)
    finished = [n.is_leaf for n in nodes]
    return dvts_counts(args.rewards(nodes), finished, subtrees, samples)


def _beam(args: RuleArgs, nodes: Sequence[Node], depth: int, groups: Groups) -> list[int]:
    return beam_counts(
        args.rewards(nodes), args.count("k", depth), args.count("generations", depth)
    )


def _beam_bounds(args: RuleArgs, nodes: Sequence[Node], depth: int, groups: Groups) -> list[int]:
    # A candidate a partial top-k leaves out stays out; a survivor gets at most N.
    kept = top_counts(args.rewards(nodes), args.count("k", depth), 1, None)
    return [args.count("generations", depth) if k else 0 for k in kept]


def _scoped(attrs: SelectAttrs) -> Granularity:
    return Granularity.SUBTREE if attrs.scope is SelectScope.SUBTREE else Granularity.LAYER


def _top_width(args: RuleArgs, roots: int) -> int:
    groups = roots if args.attrs.scope is SelectScope.SUBTREE else 1
    return args.count("k", 0) * _children(args, 0) * groups


RULES: Mapping[str, RuleEntry] = {
    SelectRule.EACH: RuleEntry(
        granularity=lambda attrs: Granularity.NODE,
        counts=_each,
        arguments=("children",),
        keep=lambda args, nodes, depth, groups: [True] * len(nodes),
        final_drop=True,
        width=lambda args, roots: _children(args, 0) * roots,
    ),
    SelectRule.TOP: RuleEntry(
        granularity=_scoped,
        counts=_top,
        arguments=("k", "children"),
        keep=_top_keep,
        final_drop=True,  # later candidates only push a left-out one further down
        bounds=_top,
        fan_out=lambda args: _children(args, 0),
        width=_top_width,
    ),
    SelectRule.WHERE: RuleEntry(
        granularity=lambda attrs: Granularity.NODE,  # each node's own condition
        counts=_where,
        arguments=("condition", "children"),
        keep=_where_keep,
        final_drop=True,
        bounds=_where,
        fan_out=lambda args: _children(args, 0),
    ),
    SelectRule.SOFTMAX_ALLOCATE: RuleEntry(
        granularity=_scoped,
        counts=_allocating(_softmax_of),
        arguments=("temperature", "budget"),
        estimate=_estimated(_softmax_of),
        prior=_softmax_prior,
        bounds=_softmax_bounds,
        width=lambda args, roots: args.count("budget", 0),
    ),
    SelectRule.ETS_ALLOCATE: RuleEntry(
        granularity=_scoped,
        counts=_allocating(_ets_of),
        arguments=("temperature", "budget", "keep_cost"),
        estimate=_estimated(_ets_of),
        prior=_softmax_prior,
        bounds=_ets_bounds,
        width=lambda args, roots: args.count("budget", 0),
    ),
    "dvts": RuleEntry(
        granularity=lambda attrs: Granularity.SUBTREE,
        counts=_dvts,
        arguments=("samples",),
        sees_leaves=True,
        subtree=lambda args, node: node.path[0] // args.count("samples", 0) if node.path else -1,
        fan_out=lambda args: args.count("samples", 0),
        width=lambda args, roots: roots,
    ),
    "beam": RuleEntry(
        granularity=lambda attrs: Granularity.LAYER,
        counts=_beam,
        arguments=("k", "generations"),
        bounds=_beam_bounds,
        fan_out=lambda args: max(1, args.count("generations", 0) // args.count("k", 0)),
        width=lambda args, roots: args.count("generations", 0),
    ),
    SelectRule.UCT: RuleEntry(
        granularity=lambda attrs: Granularity.SIBLINGS,
        counts=None,
        arguments=("children", "exploration"),
    ),
    SelectRule.ORDERED: RuleEntry(
        granularity=lambda attrs: Granularity.SIBLINGS,
        counts=None,
        arguments=("children", "prune_below"),
    ),
}


def rule_entry(rule: str) -> RuleEntry | None:
    return RULES.get(rule)


def reads_counts(attrs: SelectAttrs, entry: RuleEntry) -> bool:
    """Whether any argument of the rule reads a search-wide count (then it sees the layer)."""
    for name in entry.arguments:
        expr = attrs.children if name == "children" else attrs.arg(name)
        if expr is not None and counts_read(expr):
            return True
    return False


@dataclass(frozen=True)
class Stage:
    """One SELECT op of a selection: its name, attributes and registry entry."""

    op: str
    attrs: SelectAttrs
    entry: RuleEntry

    def args(self, counts: Mapping[Counted, int]) -> RuleArgs:
        return RuleArgs(self.op, self.attrs, counts)


@dataclass(frozen=True)
class Pipeline:
    """A selection as its chain of stages: each keeps some of its candidates (in node order),
    the last gives each kept candidate its children. One stage is the plain rule."""

    stages: tuple[Stage, ...]

    @property
    def last(self) -> Stage:
        return self.stages[-1]

    @property
    def single(self) -> bool:
        return len(self.stages) == 1

    def granularity(self) -> Granularity:
        found = Granularity.NODE
        for stage in self.stages:
            g = stage.entry.granularity(stage.attrs)
            if g not in COARSENESS:
                return g
            if reads_counts(stage.attrs, stage.entry):
                g = Granularity.LAYER  # a count is a search-wide tally: it sees the layer
            if COARSENESS[g] > COARSENESS[found]:
                found = g
        return found

    def kept(
        self, counts: Mapping[Counted, int], nodes: Sequence[Node], depth: int, groups: Groups
    ) -> list[int]:
        """Indices of the candidates every stage before the last keeps."""
        alive = list(range(len(nodes)))
        for stage in self.stages[:-1]:
            keep = stage.entry.keep
            assert keep is not None
            sub = [nodes[i] for i in alive]
            flags = keep(stage.args(counts), sub, depth, _sub(groups, alive))
            alive = [i for i, k in zip(alive, flags, strict=True) if k]
        return alive

    def counts(
        self, counts: Mapping[Counted, int], nodes: Sequence[Node], depth: int, groups: Groups
    ) -> list[int]:
        """Children per candidate, in candidate order."""
        alive = self.kept(counts, nodes, depth, groups)
        last = self.last
        assert last.entry.counts is not None
        sub = last.entry.counts(
            last.args(counts), [nodes[i] for i in alive], depth, _sub(groups, alive)
        )
        return _spread(len(nodes), alive, sub)

    @property
    def estimates(self) -> bool:
        return self.single and self.last.entry.estimate is not None

    def estimate(
        self,
        counts: Mapping[Counted, int],
        nodes: Sequence[Node],
        depth: int,
        prior: float,
        unknown: int,
    ) -> list[int]:
        estimate = self.last.entry.estimate
        assert estimate is not None and self.single
        return estimate(self.last.args(counts), nodes, depth, prior, unknown)

    def prior(self, counts: Mapping[Counted, int], nodes: Sequence[Node], depth: int) -> float:
        prior = self.last.entry.prior
        assert prior is not None
        return prior(self.last.args(counts), nodes, depth)

    @property
    def bounded(self) -> bool:
        """Whether a partial layer bounds the final counts: every earlier stage's drops are
        final (so the final kept set's weights dominate the partial one's) and the last stage
        has bounds."""
        return self.last.entry.bounds is not None and all(
            s.entry.final_drop for s in self.stages[:-1]
        )

    def bounds(
        self, counts: Mapping[Counted, int], nodes: Sequence[Node], depth: int, groups: Groups
    ) -> list[int]:
        alive = self.kept(counts, nodes, depth, groups)
        bounds = self.last.entry.bounds
        assert bounds is not None
        sub = bounds(self.last.args(counts), [nodes[i] for i in alive], depth, _sub(groups, alive))
        return _spread(len(nodes), alive, sub)

    def fan_out(self, counts: Mapping[Counted, int]) -> int:
        return self.last.entry.fan_out(self.last.args(counts))

    def width(self, counts: Mapping[Counted, int], roots: int) -> int:
        return self.last.entry.width(self.last.args(counts), roots)


def _sub(groups: Groups, alive: list[int]) -> Groups:
    return None if groups is None else [groups[i] for i in alive]


def _spread(n: int, alive: list[int], sub: Sequence[int]) -> list[int]:
    out = [0] * n
    for i, c in zip(alive, sub, strict=True):
        out[i] = c
    return out
