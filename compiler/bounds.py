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

BOUND_CAP = 10**18  # beyond this a "bound" says nothing useful; it is reported as None

_LAYERED_GROWS = frozenset({Counted.NODES, Counted.EXPANSIONS})
_ROLLOUT_GROWS = frozenset({Counted.ROLLOUTS})
_DEPTH_FIRST_GROWS = frozenset({Counted.NODES, Counted.EXPANSIONS})


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


def _upper(expr: Expr | None, depth: int) -> int | None:
    if expr is None:
        return None
    hi = interval(expr, {"depth": Interval(0.0, float(depth))}).hi
    if math.isnan(hi) or hi >= BOUND_CAP:
        return None
    return max(0, math.floor(hi))


def _capped(value: int | None) -> int | None:
    return value if value is not None and value <= BOUND_CAP else None


def _tree_size(children: int, depth: int) -> int | None:
    """Nodes below the root of a full tree: children + children^2 + ... + children^depth."""
    total, layer = 0, 1
    for _ in range(depth):
        layer *= children
        total += layer
        if total > BOUND_CAP:
            return None
    return total


def _layered(search: ir.SearchAttrs, select: ir.SelectAttrs, layers: int) -> int | None:
    """Σ over layers of the most children a layer can get, by rule: each: F·C; top: min(K, F)·C
    (per subtree: min(K·S, F)·C with S the root's children); allocate: B; F = the previous
    layer's size."""
    children = _upper(select.children, layers)
    k = _upper(select.k, layers)
    budget = _upper(select.budget, layers)

    def layer(frontier: int) -> int | None:
        rule = select.rule
        if rule in (ir.SelectRule.SOFTMAX_ALLOCATE, ir.SelectRule.ETS_ALLOCATE):
            return budget
        if children is None:
            return None
        if rule is ir.SelectRule.EACH:
            return frontier * children
        if k is None:
            return None
        if select.scope is ir.SelectScope.SUBTREE:
            return min(k * subtrees, frontier) * children
        return min(k, frontier) * children

    subtrees = 1
    first = _upper(search.root_children, layers) if search.root_children is not None else layer(1)
    if first is None:
        return None
    subtrees = first
    total, size = first, first
    for done in range(1, layers):
        nxt = layer(size)
        if nxt is None:
            return None
        if nxt == size:  # a fixed point: every later layer is as large
            return _capped(total + size * (layers - done))
        total, size = total + nxt, nxt
        if total > BOUND_CAP:
            return None
    return _capped(total)


def bounds(graph: ir.StrategyGraph) -> Bounds:
    """Worst-case generate calls, reward calls, tokens and depth of one query.

    layered: L = the fewest layers after which `until` must hold (depth >= D gives D; a count of
    nodes or expansions >= N gives N, each layer adding one at least) or the leaf test's depth
    bound, whichever is smaller; generate calls = Σ_{d=1..L} W_d with W_1 = `start children` (or
    the rule applied to the root) and W_d from the rule (see `_layered`).
    rollout: R rollouts (count(rollouts) >= R) of at most D expansions each (D = the leaf test's
    depth bound) of C children: min(R·D·C, C + C² + ... + C^D) generate calls; depth D.
    depth_first: E expansions (count(expansions) or count(nodes) >= E) of C children: E·C, at
    most the full tree to the leaf depth bound D if there is one; depth min(E, D).
    Every kind: reward calls = generate calls × the number of REWARD ops (each new node is scored
    by every reward role read); tokens = generate calls × the policy's max_tokens per step.
    """
    search = graph.only(ir.OpKind.SEARCH).attrs
    select = graph.only(ir.OpKind.SELECT).attrs
    leaf = graph.only(ir.OpKind.LEAF_TEST).attrs
    stop = graph.only(ir.OpKind.STOP_TEST).attrs
    gen = graph.only(ir.OpKind.GENERATE).attrs
    assert isinstance(search, ir.SearchAttrs) and isinstance(select, ir.SelectAttrs)
    assert isinstance(leaf, ir.LeafAttrs) and isinstance(stop, ir.StopAttrs)
    assert isinstance(gen, ir.GenerateAttrs)
    leaf_depth = loop_bound(leaf.condition, frozenset(), depth=True)
    calls: int | None
    depth: int | None
    if search.kind is ir.SearchKind.LAYERED:
        until = loop_bound(stop.condition, _LAYERED_GROWS, depth=True)
        known = [b for b in (until, leaf_depth) if b is not None]
        depth = min(known) if known else None
        calls = _layered(search, select, depth) if depth is not None else None
    elif search.kind is ir.SearchKind.ROLLOUT:
        rollouts = loop_bound(stop.condition, _ROLLOUT_GROWS, depth=False)
        depth = leaf_depth
        children = _upper(select.children, depth or 0)
        if rollouts is None or depth is None or children is None:
            calls = None
        else:
            tree = _tree_size(children, depth)
            per_path = rollouts * depth * children
            calls = _capped(min(per_path, tree) if tree is not None else per_path)
    else:
        expansions = loop_bound(stop.condition, _DEPTH_FIRST_GROWS, depth=False)
        known = [b for b in (expansions, leaf_depth) if b is not None]
        depth = min(known) if expansions is not None else None
        children = _upper(select.children, depth or 0)
        if expansions is None or children is None:
            calls = None
        else:
            tree = _tree_size(children, leaf_depth) if leaf_depth is not None else None
            calls = _capped(
                min(expansions * children, tree) if tree is not None else expansions * children
            )
    rewards = len(graph.ops_of(ir.OpKind.REWARD))
    return Bounds(
        generate_calls=calls,
        reward_calls=_capped(calls * rewards) if calls is not None else None,
        tokens=_capped(calls * gen.sampling.max_tokens) if calls is not None else None,
        depth=depth,
    )
