"""Static worst-case bounds of a compiled strategy, for its parameter values, before any run.

`bounds(graph)` returns how many generate calls, reward calls and generated tokens one query can
cost at most, and how deep its tree can grow. The loop bound comes from `until` (and, for layered
and rollout search, from a depth bound in the leaf test); every rule argument is bounded above by
interval arithmetic (a count is at least 0, depth lies in [0, the depth bound]). A field is None
when no finite bound below `BOUND_CAP` exists (an unbounded budget, an astronomically wide tree).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from compiler import ir
from compiler.expr import Binary, Const, Count, Counted, Expr, Ref
from compiler.intervals import Interval, interval
from compiler.rules import RULES, ArgType

BOUND_CAP = 10**18  # beyond this a "bound" says nothing useful; it is reported as None
# The most generate calls one query may need: a program (or `-p` values) needing more is refused
# at compile time with the bound it would need. 10^8 steps of 256 tokens is ~25 billion tokens for
# one question, far past any search in the literature; a bigger bound is a mistaken parameter.
GENERATE_CALL_LIMIT = 10**8
# Bounds computed to decide whether a program is over the limit may be far bigger than BOUND_CAP.
CHECK_CAP = 10**60

_LAYERED_GROWS = frozenset({Counted.NODES, Counted.EXPANSIONS})
_ROLLOUT_GROWS = frozenset({Counted.ROLLOUTS})
_DEPTH_FIRST_GROWS = frozenset({Counted.NODES, Counted.EXPANSIONS})  # also best_first


@dataclass(frozen=True)
class Bounds:
    """Worst-case costs of one query; None where no finite bound exists."""

    generate_calls: int | None
    reward_calls: int | None
    tokens: int | None
    depth: int | None


def _threshold(expr: Expr) -> float | None:
    if (
        isinstance(expr, Const)
        and isinstance(expr.value, int | float)
        and not isinstance(expr.value, bool)
    ):
        return float(expr.value)
    return None


def _grows(expr: Expr, counts: frozenset[Counted], depth: bool) -> bool:
    if isinstance(expr, Ref):
        return depth and expr.name == "depth"
    return isinstance(expr, Count) and expr.what in counts


def loop_bound(cond: Expr, counts: frozenset[Counted], depth: bool) -> int | None:
    """The most iterations before `cond` must hold, if it bounds a quantity that grows by at
    least one per iteration (`depth` when `depth` is True, or a count in `counts`)."""
    if not isinstance(cond, Binary):
        return None
    if cond.op in ("or", "and"):
        left = loop_bound(cond.left, counts, depth)
        right = loop_bound(cond.right, counts, depth)
        if cond.op == "or":
            known = [b for b in (left, right) if b is not None]
            return min(known) if known else None
        return max(left, right) if left is not None and right is not None else None
    op, quantity, limit = cond.op, cond.left, cond.right
    if op in ("<", "<="):  # `E <= Q` is `Q >= E`
        op, quantity, limit = {"<": ">", "<=": ">="}[op], cond.right, cond.left
    value = _threshold(limit)
    if op not in (">", ">=") or value is None or not _grows(quantity, counts, depth):
        return None
    reached = math.ceil(value) if op == ">=" else math.floor(value) + 1
    return max(1, reached)  # a loop body runs at least once before its test


def _upper(expr: Expr | None, depth: int, cap: int = BOUND_CAP) -> int | None:
    if expr is None:
        return None
    hi = interval(expr, {"depth": Interval(0.0, float(depth))}).hi
    if math.isnan(hi) or hi >= cap:
        return None
    return max(0, math.floor(hi))


def _tree_size(children: int, depth: int, cap: int = BOUND_CAP) -> int | None:
    """Nodes below the root of a full tree: children + children^2 + ... + children^depth."""
    total, layer = 0, 1
    for _ in range(depth):
        layer *= children
        total += layer
        if total > cap:
            return None
    return total


def select_chain(graph: ir.StrategyGraph) -> list[ir.SelectAttrs]:
    """The selection's stages, first first."""
    stages = [op.attrs for op in graph.ops_of(ir.OpKind.SELECT)]
    assert all(isinstance(a, ir.SelectAttrs) for a in stages)
    return sorted((a for a in stages if isinstance(a, ir.SelectAttrs)), key=lambda a: a.stage)


@dataclass(frozen=True)
class _Iteration:
    """The most children one iteration can hand out, as a function of how many candidates the
    selection runs on (None: unknown); read off the registry's bounds of every stage."""

    stages: list[ir.SelectAttrs]
    depth: int
    subtrees: int
    cap: int

    def children(self, candidates: int | None) -> int | None:
        kept = candidates
        for stage in self.stages:
            spec = RULES[stage.rule]
            args = {
                a.name: _upper(a.value, self.depth, self.cap)
                for a in stage.args
                if spec.arg(a.name) is not None
                and spec.arg(a.name).type in (ArgType.INT, ArgType.FLOAT)  # type: ignore[union-attr]
            }
            subtrees = self.subtrees if stage.scope is ir.SelectScope.SUBTREE else 1
            if spec.allocates is not None:
                return spec.allocates(args)
            kept = spec.keeps(kept, args, subtrees)
        per_node = _upper(self.stages[-1].children, self.depth, self.cap)
        if kept is None or per_node is None:
            return None
        return kept * per_node


def _layered(
    search: ir.SearchAttrs, stages: list[ir.SelectAttrs], layers: int, cap: int
) -> int | None:
    """Σ over layers of the most children a layer can get: the stages' bounds applied to the
    previous layer's size (each: F·C; top: min(K, F)·C, per subtree min(K·S, F)·C with S the
    root's children; where: F·C; allocate: B)."""
    step = _Iteration(stages, layers, 1, cap)
    first = _upper(search.root_children, layers, cap) if search.root_children else step.children(1)
    if first is None:
        return None
    step = _Iteration(stages, layers, first, cap)
    total, size = first, first
    for done in range(1, layers):
        nxt = step.children(size)
        if nxt is None:
            return None
        if nxt == size:  # a fixed point: every later layer is as large
            total += size * (layers - done)
            return total if total <= cap else None
        total, size = total + nxt, nxt
        if total > cap:
            return None
    return total if total <= cap else None


def bounds(graph: ir.StrategyGraph, cap: int = BOUND_CAP) -> Bounds:
    """Worst-case generate calls, reward calls, tokens and depth of one query.

    layered: L = the fewest layers after which `until` must hold (depth >= D gives D; a count of
    nodes or expansions >= N gives N, each layer adding one at least) or the leaf test's depth
    bound, whichever is smaller; generate calls = Σ_{d=1..L} W_d with W_1 = `start children` (or
    the rule applied to the root) and W_d from the selection's stages (see `_layered`).
    best_first: E iterations (count(expansions) or count(nodes) >= E) of at most the stages'
    bound on any number of open nodes (top(K): K nodes) times C children.
    rollout: R rollouts (count(rollouts) >= R) of at most D expansions each (D = the leaf test's
    depth bound) of C children: min(R·D·C, C + C² + ... + C^D) generate calls; depth D.
    depth_first: E expansions (count(expansions) or count(nodes) >= E) of C children: E·C, at
    most the full tree to the leaf depth bound D if there is one; depth min(E, D).
    Every kind: each lookahead adds, per new node, `steps` generate calls and one reward call;
    reward calls = generate calls × the number of REWARD ops (each new node is scored by every
    reward role read; a judge with text verdicts counts its samples) plus the lookaheads';
    tokens = generate calls × max_tokens per step. Above `cap`, a bound is None.
    """
    search = graph.only(ir.OpKind.SEARCH).attrs
    stages = select_chain(graph)
    last = stages[-1]
    leaf = graph.only(ir.OpKind.LEAF_TEST).attrs
    stop = graph.only(ir.OpKind.STOP_TEST).attrs
    gen = graph.only(ir.OpKind.GENERATE).attrs
    assert isinstance(search, ir.SearchAttrs)
    assert isinstance(leaf, ir.LeafAttrs) and isinstance(stop, ir.StopAttrs)
    assert isinstance(gen, ir.GenerateAttrs)
    leaf_depth = loop_bound(leaf.condition, frozenset(), depth=True)
    calls: int | None
    depth: int | None
    if search.kind is ir.SearchKind.LAYERED:
        until = loop_bound(stop.condition, _LAYERED_GROWS, depth=True)
        known = [b for b in (until, leaf_depth) if b is not None]
        depth = min(known) if known else None
        calls = _layered(search, stages, depth, cap) if depth is not None else None
    elif search.kind is ir.SearchKind.ROLLOUT:
        rollouts = loop_bound(stop.condition, _ROLLOUT_GROWS, depth=False)
        depth = leaf_depth
        children = _upper(last.children, depth or 0, cap)
        if rollouts is None or depth is None or children is None:
            calls = None
        else:
            tree = _tree_size(children, depth, cap)
            per_path = rollouts * depth * children
            calls = min(per_path, tree) if tree is not None else per_path
    else:
        expansions = loop_bound(stop.condition, _DEPTH_FIRST_GROWS, depth=False)
        known = [b for b in (expansions, leaf_depth) if b is not None]
        depth = min(known) if expansions is not None else None
        if search.kind is ir.SearchKind.BEST_FIRST:
            per_iteration = _Iteration(stages, depth or 0, 1, cap).children(None)
        else:
            per_iteration = _upper(last.children, depth or 0, cap)
        if expansions is None or per_iteration is None:
            calls = None
        else:
            tree = None
            children = _upper(last.children, depth or 0, cap)
            if leaf_depth is not None and children is not None:
                tree = _tree_size(children, leaf_depth, cap)
            calls = (
                min(expansions * per_iteration, tree)
                if tree is not None
                else (expansions * per_iteration)
            )
    rewards = 0
    for op in graph.ops_of(ir.OpKind.REWARD):
        assert isinstance(op.attrs, ir.RewardAttrs)
        judge = op.attrs.judge
        rewards += judge.samples if judge is not None else 1
    looks = [op.attrs for op in graph.ops_of(ir.OpKind.LOOKAHEAD)]
    tokens_per_call = gen.sampling.max_tokens
    extra_calls, extra_tokens = 0, 0
    for look in looks:
        assert isinstance(look, ir.LookaheadAttrs)
        steps = _upper(look.steps, 0, cap)
        if steps is None:
            calls = None
            break
        extra_calls += steps
        extra_tokens += steps * look.sampling.max_tokens
    if calls is None or calls > cap:
        return Bounds(None, None, None, depth)
    generate_calls = calls * (1 + extra_calls)
    reward_calls = calls * (rewards + len(looks))
    tokens = calls * (tokens_per_call + extra_tokens)
    return Bounds(
        generate_calls=generate_calls if generate_calls <= cap else None,
        reward_calls=reward_calls if reward_calls <= cap else None,
        tokens=tokens if tokens <= cap else None,
        depth=depth,
    )
