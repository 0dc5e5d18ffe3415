"""The run-time side of the selection rules: one registry entry per `SelectRule`.

Everything the interpreter knows about a rule is here, so adding a rule means one entry (and the
compiler's static entry), never a new driver. An entry says:

- `granularity`: the smallest set of candidates the rule must see at once. `NODE`: each node
  alone (it reads nothing of its siblings); `SUBTREE`: a subtree's layer (a `per subtree` scope);
  `LAYER`: the whole layer; `SIBLINGS`: the children of one node (descent rules: UCT,
  best-first). The program widens it to `LAYER` when an argument reads a search-wide count.
- `counts`: the rule's children per candidate, in candidate (node) order, over a complete input.
- `estimate` (optional): counts on a partial layer in which `unknown` candidates of reward
  `prior` are still to come (allocation rules split a fixed budget: see layered.py), and
  `prior`, the reward standing in for a missing candidate.
- `bounds` (optional): for a partial layer, the most children the final selection can still give
  each candidate seen so far; speculative children past a bound are cancelled at once.
- `fan_out`: children one pick yields, for the per-layer speculative cap.
- `width`: the main-path requests of one layer (the global budget's nominal width).

Rules read their arguments through `RuleArgs`, which evaluates an attribute at a depth and
reports a failure located at that attribute (`StrategyError`).
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
    each_counts,
    ets_counts,
    softmax_counts,
    top_counts,
)


class Granularity(Enum):
    """How many candidates a selection must see before it can fire."""

    NODE = "node"  # each node on its own: chains never wait for each other
    SUBTREE = "subtree"  # the layer of one subtree under a root child
    LAYER = "layer"  # the whole layer
    SIBLINGS = "siblings"  # the children of one node (descents: UCT, best-first)


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
AT_LEAST = {"children": 1, "k": 1, "budget": 0, "root_children": 1}
WORDS = {
    "children": "`children`",
    "k": "the K of top(K, ...)",
    "budget": "the budget",
    "root_children": "`start children`",
    "temperature": "the temperature",
    "keep_cost": "`keep_cost`",
    "exploration": "the exploration constant",
    "prune_below": "the prune bound",
}


def evaluate_at(
    op: str,
    attr: str,
    expr: Expr,
    names: Mapping[str, Value],
    counts: Mapping[Counted, int] | None,
) -> Value:
    """`evaluate` whose failure is a StrategyError located at `op`.`attr`."""
    try:
        return evaluate(expr, names, counts)
    except EvalError as e:
        raise StrategyError(op, attr, str(expr), str(e)) from None
    except (TypeError, ArithmeticError) as e:
        raise StrategyError(op, attr, str(expr), f"{expr}: {e}") from None


@dataclass(frozen=True)
class RuleArgs:
    """A selection's arguments, evaluated against the search's counts at a given depth."""

    op: str
    attrs: SelectAttrs
    counts: Mapping[Counted, int]

    def expr(self, attr: str) -> Expr:
        found = getattr(self.attrs, attr)
        if found is None:
            raise StrategyError(self.op, attr, "", f"the {self.attrs.rule.value} rule needs {attr}")
        assert not isinstance(found, str | SelectRule | SelectScope)
        value: Expr = found
        return value

    def number(self, attr: str, depth: int) -> float:
        return float(evaluate_at(self.op, attr, self.expr(attr), {"depth": depth}, self.counts))

    def count(self, attr: str, depth: int) -> int:
        """An integer argument; below its lower bound it is an error naming the expression."""
        return checked_count(self.op, attr, self.expr(attr), {"depth": depth}, self.counts)


def checked_count(
    op: str,
    attr: str,
    expr: Expr,
    names: Mapping[str, Value],
    counts: Mapping[Counted, int] | None,
) -> int:
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
            f"{WORDS.get(attr, attr)} must be at least {low}, but {expr} is {n} (with {where})",
        )
    return n


Counts = Callable[[RuleArgs, Sequence[float], int, Sequence[Hashable] | None], list[int]]
Estimate = Callable[[RuleArgs, Sequence[float], int, float, int], list[int]]
Bounds = Callable[[RuleArgs, Sequence[float], int, Sequence[Hashable] | None], list[int]]
Prior = Callable[[RuleArgs, Sequence[float], int], float]


@dataclass(frozen=True)
class RuleEntry:
    """What the interpreter knows about one selection rule (see the module docstring)."""

    granularity: Callable[[SelectAttrs], Granularity]
    counts: Counts | None  # None: a descent rule, run by its search construct
    arguments: tuple[str, ...]
    estimate: Estimate | None = None
    prior: Prior | None = None
    bounds: Bounds | None = None
    fan_out: Callable[[RuleArgs], int] = lambda args: 1
    width: Callable[[RuleArgs, int], int] = lambda args, roots: roots


# -- the entries ------------------------------------------------------------------------------


def _each(args: RuleArgs, rewards: Sequence[float], depth: int, groups: object) -> list[int]:
    return each_counts(len(rewards), args.count("children", depth))


def _top(
    args: RuleArgs, rewards: Sequence[float], depth: int, groups: Sequence[Hashable] | None
) -> list[int]:
    return top_counts(rewards, args.count("k", depth), args.count("children", depth), groups)


def _top_bounds(
    args: RuleArgs, rewards: Sequence[float], depth: int, groups: Sequence[Hashable] | None
) -> list[int]:
    # A partial top-k is final for a candidate it leaves out: later candidates only push it down.
    return _top(args, rewards, depth, groups)


def _softmax(args: RuleArgs, rewards: Sequence[float], depth: int, groups: object) -> list[int]:
    return softmax_counts(rewards, args.number("temperature", depth), args.count("budget", depth))


def _ets(args: RuleArgs, rewards: Sequence[float], depth: int, groups: object) -> list[int]:
    return ets_counts(
        rewards,
        args.number("temperature", depth),
        args.count("budget", depth),
        args.number("keep_cost", depth),
    )


def _estimated(counts: Counts) -> Estimate:
    """Counts of an allocation over the known rewards plus `unknown` stand-ins of `prior`."""

    def estimate(
        args: RuleArgs, rewards: Sequence[float], depth: int, prior: float, unknown: int
    ) -> list[int]:
        full = [*rewards, *([prior] * unknown)]
        return counts(args, full, depth, None)[: len(rewards)]

    return estimate


def _softmax_prior(args: RuleArgs, rewards: Sequence[float], depth: int) -> float:
    """The reward whose softmax weight is the mean weight of `rewards` (log-mean-exp): the
    expected weight of a candidate not scored yet."""
    temperature = args.number("temperature", depth)
    top = max(rewards)
    if temperature <= 0:
        return top
    mean = sum(math.exp((r - top) / temperature) for r in rewards) / len(rewards)
    return top + temperature * math.log(mean)


def _softmax_bounds(
    args: RuleArgs, rewards: Sequence[float], depth: int, groups: object
) -> list[int]:
    return allocation_bounds(
        rewards, args.number("temperature", depth), args.count("budget", depth), None
    )


def _ets_bounds(args: RuleArgs, rewards: Sequence[float], depth: int, groups: object) -> list[int]:
    return allocation_bounds(
        rewards,
        args.number("temperature", depth),
        args.count("budget", depth),
        args.number("keep_cost", depth),
    )


def _scoped(attrs: SelectAttrs) -> Granularity:
    return Granularity.SUBTREE if attrs.scope is SelectScope.SUBTREE else Granularity.LAYER


def _top_width(args: RuleArgs, roots: int) -> int:
    groups = roots if args.attrs.scope is SelectScope.SUBTREE else 1
    return args.count("k", 0) * args.count("children", 0) * groups


RULES: Mapping[SelectRule, RuleEntry] = {
    SelectRule.EACH: RuleEntry(
        granularity=lambda attrs: Granularity.NODE,
        counts=_each,
        arguments=("children",),
        width=lambda args, roots: args.count("children", 0) * roots,
    ),
    SelectRule.TOP: RuleEntry(
        granularity=_scoped,
        counts=_top,
        arguments=("k", "children"),
        bounds=_top_bounds,
        fan_out=lambda args: args.count("children", 0),
        width=_top_width,
    ),
    SelectRule.SOFTMAX_ALLOCATE: RuleEntry(
        granularity=_scoped,
        counts=_softmax,
        arguments=("temperature", "budget"),
        estimate=_estimated(_softmax),
        prior=_softmax_prior,
        bounds=_softmax_bounds,
        width=lambda args, roots: args.count("budget", 0),
    ),
    SelectRule.ETS_ALLOCATE: RuleEntry(
        granularity=_scoped,
        counts=_ets,
        arguments=("temperature", "budget", "keep_cost"),
        estimate=_estimated(_ets),
        prior=_softmax_prior,
        bounds=_ets_bounds,
        width=lambda args, roots: args.count("budget", 0),
    ),
    SelectRule.UCT: RuleEntry(
        granularity=lambda attrs: Granularity.SIBLINGS,
        counts=None,
        arguments=("children", "exploration"),
    ),
    SelectRule.BEST_FIRST: RuleEntry(
        granularity=lambda attrs: Granularity.SIBLINGS,
        counts=None,
        arguments=("children", "prune_below"),
    ),
}


def rule_entry(rule: SelectRule) -> RuleEntry:
    return RULES[rule]


def reads_counts(attrs: SelectAttrs, entry: RuleEntry) -> bool:
    """Whether any argument of the rule reads a search-wide count (then it sees the layer)."""
    for name in entry.arguments:
        expr = getattr(attrs, name)
        if expr is not None and counts_read(expr):
            return True
    return False
